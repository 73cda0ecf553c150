import CLinuxShims
import Glibc

/// Socket set-up helpers: listeners, outgoing connections, addresses.
public enum Socket {
    /// A non-blocking listening socket. With `reusePort` several workers each bind their own
    /// socket to the same address and the kernel spreads new connections across them.
    public static func listen(on address: SocketAddress, reusePort: Bool, backlog: Int32 = 1024) throws(SystemError) -> Int32 {
        let fd = try Syscall.socket(address.family, Int32(SOCK_STREAM.rawValue))
        do {
            try Syscall.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if reusePort { try Syscall.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
            _ = try Syscall.call("bind") { address.withSockAddr { Int(Glibc.bind(fd, $0, $1)) } }
            _ = try Syscall.call("listen") { Int(Glibc.listen(fd, backlog)) }
        } catch {
            Syscall.close(fd)
            throw error
        }
        return fd
    }

    /// Whether another socket already listens on `address`: a plain bind (SO_REUSEADDR, which
    /// passes TIME_WAIT leftovers but no listener, and no SO_REUSEPORT) fails with EADDRINUSE.
    public static func isTaken(_ address: SocketAddress) -> Bool {
        guard let fd = try? Syscall.socket(address.family, Int32(SOCK_STREAM.rawValue)) else { return false }
        defer { Syscall.close(fd) }
        try? Syscall.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        do {
            _ = try Syscall.call("bind") { address.withSockAddr { Int(Glibc.bind(fd, $0, $1)) } }
            return false
        } catch {
            return error.errno == EADDRINUSE
        }
    }

    /// The address a socket is bound to (to learn the port the kernel chose for port 0).
    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0) }
        }
    }

    public enum ConnectProgress {
        case connected
        case inProgress
    }

    /// Starts a non-blocking connect. The caller waits for writability, then asks
    /// `pendingError` whether it succeeded.
    public static func connect(to address: SocketAddress) throws(SystemError) -> (fd: Int32, progress: ConnectProgress) {
        let fd = try Syscall.socket(address.family, Int32(SOCK_STREAM.rawValue))
        _ = try? Syscall.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        while true {
            let result = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if result == 0 { return (fd, .connected) }
            let err = sy_errno()
            if err == EINTR { continue }
            if err == EINPROGRESS { return (fd, .inProgress) }
            Syscall.close(fd)
            throw SystemError("connect", errno: err)
        }
    }

    /// The error of a finished non-blocking connect (0 when it succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return sy_errno() }
        return value
    }

    /// Switches a socket to blocking mode (the demo backend's thread-per-connection model).
    public static func setBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
    }

    /// Asks for a send buffer of at least `bytes` (the kernel may cap it at net.core.wmem_max).
    public static func setSendBuffer(_ fd: Int32, bytes: Int) {
        _ = try? Syscall.setOption(fd, SOL_SOCKET, SO_SNDBUF, Int32(clamping: bytes))
    }

    public static func setNoDelay(_ fd: Int32) {
        _ = try? Syscall.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }
}
