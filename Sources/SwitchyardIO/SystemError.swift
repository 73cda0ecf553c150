import CLinuxShims
import Glibc

/// A failed system call: which call and the `errno` it left.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}

/// The result of a non-blocking read or write.
public enum IOResult: Equatable {
    case processed(Int)
    case wouldBlock
}
