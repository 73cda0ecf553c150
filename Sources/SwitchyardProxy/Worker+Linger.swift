import SwitchyardIO

/// A client socket the proxy closes after answering: its sending side is shut, and what the
/// client still sends is read and dropped until it closes or `Worker.lingerMs` pass. Closing a
/// socket with unread bytes sends a reset, which can destroy the answer before the client has
/// read it (a plain HTTP request on a TLS port, a connection refused over
/// `limits.max_connections`). HTTP/1.1 connections linger in their own machine.
final class LingeringSocket {
    let fd: Int32
    var token: UInt64 = 0
    let deadline: UInt64

    init(fd: Int32, deadline: UInt64) {
        self.fd = fd
        self.deadline = deadline
    }
}

extension Worker {
    static let lingerMs: UInt64 = 1000

    /// Lingers on `fd`, registered under `token` (the client connection's, taken over) or, with
    /// token 0, registered now. Closes it when lingering is not possible.
    func linger(fd: Int32, token: UInt64) {
        Syscall.shutdownWrite(fd)
        guard descriptors.mayLinger else {
            if token != 0 { table.remove(token) }
            return Syscall.close(fd)
        }
        let socket = LingeringSocket(fd: fd, deadline: now + Self.lingerMs)
        if token != 0 {
            socket.token = token
            table.replace(token, with: .lingering(socket))
        } else {
            guard let registered = register(fd, .lingering(socket)) else { return }
            socket.token = registered
        }
        descriptors.lingering += 1
        drainLingering(socket)
    }

    /// Reads and drops what arrived; closes once the client closed (or the socket failed).
    func drainLingering(_ socket: LingeringSocket) {
        while true {
            let result = lingerScratch.withUnsafeMutableBytes { try? Syscall.read(socket.fd, $0.baseAddress.unsafelyUnwrapped, $0.count) }
            switch result {
            case .processed(let count) where count > 0: continue
            case .wouldBlock: return
            default: return closeLingering(socket)  // the end, or a failed read
            }
        }
    }

    func closeLingering(_ socket: LingeringSocket) {
        guard table.lookup(socket.token).map({ if case .lingering(let s) = $0 { s === socket } else { false } }) == true else { return }
        table.remove(socket.token)
        Syscall.close(socket.fd)
        descriptors.lingering -= 1
    }
}
