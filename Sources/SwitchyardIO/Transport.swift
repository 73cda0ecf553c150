/// Bytes in and out of one connection: all a connection's driver sees of it. A plain socket
/// now; a TLS transport (records on the socket, plaintext through these calls) fits the same
/// four calls, and tests use a scripted one.
public protocol Transport {
    /// Reads once into `buffer` (not empty).
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult
    /// Writes `first` and then `second`, either of which may be empty, as far as the peer
    /// takes them now.
    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult
    /// Ends the sending direction; reads go on.
    func shutdownWrite()
    func close()
}

/// A non-blocking socket. Both parts of a write go out in one `writev` when both have bytes.
/// `@inlinable`: the request path calls these from another module, and a call through them
/// would cost as much as what they do.
public struct SocketTransport: Transport {
    public let fd: Int32

    public init(fd: Int32) {
        self.fd = fd
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        // Safe because callers pass a non-empty buffer (the protocol's contract).
        try Syscall.read(fd, buffer.baseAddress.unsafelyUnwrapped, buffer.count)
    }

    @inlinable
    public func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        if let head = first.baseAddress, !first.isEmpty {
            guard !second.isEmpty else { return try Syscall.write(fd, head, first.count) }
            return try Syscall.writev(fd, first, second)
        }
        guard let body = second.baseAddress, !second.isEmpty else { return .processed(0) }
        return try Syscall.write(fd, body, second.count)
    }

    public func shutdownWrite() {
        Syscall.shutdownWrite(fd)
    }

    public func close() {
        Syscall.close(fd)
    }
}
