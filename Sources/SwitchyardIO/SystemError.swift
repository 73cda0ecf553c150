import CLinuxShims
import Glibc

/// A failed system call: which call and the `errno` it left.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32
    /// Said instead of `strerror(errno)` when the call succeeded but its result is refused.
    public let detail: String?

    public init(_ call: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    /// The process or the system is out of descriptors or buffer memory: a limit of ours, no
    /// fault of the peer.
    public var isOutOfResources: Bool { errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM }

    public var description: String {
        "\(call): \(detail ?? String(cString: strerror(errno)))"
    }
}

/// The result of a non-blocking read or write.
public enum IOResult: Equatable {
    case processed(Int)
    case wouldBlock
}
