import CLinuxShims
import Glibc

extension Syscall {
    /// Writes two byte ranges with one `writev`: a proxy-made head and relayed body bytes go
    /// out in a single syscall.
    public static func writev(_ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        var vectors = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
        )
        return try withUnsafeMutableBytes(of: &vectors) { raw throws(SystemError) -> IOResult in
            // Safe because the bytes of a two-element tuple are never empty.
            let base = raw.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: iovec.self)
            return try nonBlocking("writev") { Glibc.writev(fd, base, 2) }
        }
    }
}
