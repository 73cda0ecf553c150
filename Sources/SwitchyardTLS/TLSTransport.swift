import COpenSSL
import Glibc
import SwitchyardIO

/// A TLS connection on a non-blocking socket: records on the socket, plaintext through the
/// `Transport` calls. OpenSSL reads and writes the socket itself (a socket BIO), so a
/// keep-alive request costs the same system calls as in plain text.
///
/// Edge-triggered epoll needs a read to go on until the socket is empty: `read` calls
/// `SSL_read` until the buffer is full or OpenSSL wants more bytes from the socket, so a short
/// read still means "drained", as it does for a plain socket.
public struct TLSTransport: Transport {
    public let fd: Int32
    let ssl: OpaquePointer

    init(fd: Int32, ssl: OpaquePointer) {
        self.fd = fd
        self.ssl = ssl
    }

    /// Whether the handshake is done (`SSL_is_init_finished`).
    public var handshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        var total = 0
        while total < buffer.count {
            ERR_clear_error()
            let room = Int32(clamping: buffer.count - total)
            let count = SSL_read(ssl, buffer.baseAddress.unsafelyUnwrapped + total, room)
            if count > 0 {
                total += Int(count)
                continue
            }
            // Bytes read before an end or an error are delivered first; the end or the error
            // shows again on the next call (OpenSSL keeps a connection's fatal error).
            let outcome: IOResult
            do {
                outcome = try self.outcome(count, call: "SSL_read")
            } catch {
                if total > 0 { return .processed(total) }
                throw error
            }
            if total > 0 { return .processed(total) }
            return outcome
        }
        return .processed(total)
    }

    public func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        if first.isEmpty { return try writeOnce(second) }
        if second.isEmpty { return try writeOnce(first) }
        let total = first.count + second.count
        guard total <= Self.coalesceLimit else {
            // Large bodies: each part in records of its own.
            let head = try writeOnce(first)
            guard case .processed(first.count) = head else { return head }
            switch try writeOnce(second) {
            case .processed(let count): return .processed(first.count + count)
            case .wouldBlock: return .processed(first.count)
            }
        }
        // A response head and a small body in one record and one system call, as `writev` does
        // for plain text. The copy is on the stack.
        let result: Result<IOResult, SystemError> = withUnsafeTemporaryAllocation(byteCount: total, alignment: 16) { scratch in
            scratch.baseAddress!.copyMemory(from: first.baseAddress!, byteCount: first.count)
            (scratch.baseAddress! + first.count).copyMemory(from: second.baseAddress!, byteCount: second.count)
            return Result { () throws(SystemError) in try writeOnce(UnsafeRawBufferPointer(scratch)) }
        }
        return try result.get()
    }

    /// Most bytes copied together into one record: one TLS record's worth.
    static let coalesceLimit = 16384

    private func writeOnce(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return .processed(0) }
        ERR_clear_error()
        let count = SSL_write(ssl, base, Int32(clamping: bytes.count))
        if count > 0 { return .processed(Int(count)) }
        let outcome = try self.outcome(count, call: "SSL_write")
        // A write that finds the connection closed is an error, not an end of file.
        if outcome == .processed(0) { throw SystemError("SSL_write", errno: EPIPE) }
        return outcome
    }

    /// What a failed `SSL_read`/`SSL_write` means: wait for the socket, the peer closed, or an
    /// error (the connection closes).
    private func outcome(_ result: Int32, call: String) throws(SystemError) -> IOResult {
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .processed(0)
        case SSL_ERROR_SYSCALL:
            let code = errno
            if code == 0 || code == ECONNRESET { return .processed(0) }
            throw SystemError(call, errno: code)
        default:
            let reason = TLSError.queued()
            if reason.httpRequest { answerPlainHTTP() }
            throw SystemError(call, errno: EPROTO, detail: reason.text)
        }
    }

    /// A plain HTTP request on a TLS port gets a readable answer, as nginx gives one, instead
    /// of a closed connection.
    private func answerPlainHTTP() {
        let answer: StaticString = """
            HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 101\r\nConnection: close\r\n\r\n\
            {"error":{"code":"bad_request","message":"this port speaks HTTPS: use https:// instead of http://"}}\n
            """
        _ = try? Syscall.write(fd, answer.utf8Start, answer.utf8CodeUnitCount)
    }

    /// Sends close_notify (best effort) and shuts the socket's sending side.
    public func shutdownWrite() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        Syscall.shutdownWrite(fd)
    }

    /// Frees the TLS state and hands the socket over, open, to the caller (who closes it).
    public func releaseDescriptor() -> Int32 {
        SSL_free(ssl)
        return fd
    }

    /// Sends close_notify first when the connection is healthy: a client whose connection ends
    /// without one treats the end as an error and does not resume the session next time.
    /// (After a fatal error OpenSSL leaves the handshake state, so nothing is sent then.)
    public func close() {
        if SSL_is_init_finished(ssl) == 1 {
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
        }
        SSL_free(ssl)
        Syscall.close(fd)
    }
}

extension TLSTransport {
    public enum HandshakeStep: Sendable {
        case done
        /// Waiting for the peer's bytes, or for room in the socket.
        case wantRead, wantWrite
    }

    /// Moves a client handshake on as far as the socket allows. A failure says why, with the
    /// verification error when the certificate was refused.
    public func handshake() throws(TLSError) -> HandshakeStep {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .done }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_SYSCALL where ERR_peek_error() == 0:
            let code = errno
            throw TLSError(code == 0 ? "the backend closed the connection during the TLS handshake"
                                     : "the TLS handshake failed: \(String(cString: strerror(code)))")
        default:
            let verdict = SSL_get_verify_result(ssl)
            if verdict != X509_V_OK {
                ERR_clear_error()
                throw TLSError("the backend's certificate was refused: \(String(cString: X509_verify_cert_error_string(verdict)))")
            }
            throw TLSError.queued("the TLS handshake failed")
        }
    }

    /// Whether the handshake resumed an earlier session.
    public var resumedSession: Bool { SSL_session_reused(ssl) == 1 }
}
