import SwitchyardIO
import SwitchyardTLS

/// A connection's bytes, plain or TLS: a client's on a plain or TLS listener, a backend's for an
/// `http` or `https` endpoint. An enum rather than a protocol existential, so the request path's
/// calls stay direct (one branch) and specialise as before for plain sockets.
enum PeerTransport: Transport {
    case plain(SocketTransport)
    case tls(TLSTransport)

    var fd: Int32 {
        switch self {
        case .plain(let socket): return socket.fd
        case .tls(let tls): return tls.fd
        }
    }

    var isTLS: Bool {
        if case .tls = self { return true }
        return false
    }

    var tls: TLSTransport? {
        if case .tls(let tls) = self { return tls }
        return nil
    }

    @inline(__always)
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        switch self {
        case .plain(let socket): return try socket.read(into: buffer)
        case .tls(let tls): return try tls.read(into: buffer)
        }
    }

    @inline(__always)
    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        switch self {
        case .plain(let socket): return try socket.write(first, second)
        case .tls(let tls): return try tls.write(first, second)
        }
    }

    func shutdownWrite() {
        switch self {
        case .plain(let socket): socket.shutdownWrite()
        case .tls(let tls): tls.shutdownWrite()
        }
    }

    func close() {
        switch self {
        case .plain(let socket): socket.close()
        case .tls(let tls): tls.close()
        }
    }
}
