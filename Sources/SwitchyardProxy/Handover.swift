import Glibc
import SwitchyardIO

/// Listening sockets a process starts with instead of binding them: from the Switchyard it
/// replaces (an upgrade: `SWITCHYARD_LISTEN_FDS=3,4,5`, and `SWITCHYARD_READY_FD`, a pipe to
/// say "ready" on), or from systemd's socket activation (`LISTEN_PID`, `LISTEN_FDS`: the
/// descriptors from 3 on). Taking over the very sockets keeps their accept queues: a
/// connection waiting in one is accepted by whichever process is serving, never reset.
final class Handover {
    static let listenVariable = "SWITCHYARD_LISTEN_FDS"
    static let readyVariable = "SWITCHYARD_READY_FD"
    static let fromVariable = "SWITCHYARD_UPGRADED_FROM"

    /// The process this one replaced by an upgrade, if any (for `/status`).
    static let upgradedFrom: pid_t? = getenv(fromVariable).flatMap { pid_t(String(cString: $0)) }

    struct Inherited {
        let fd: Int32
        let address: SocketAddress
    }

    /// Sockets not taken yet.
    private(set) var available: [Inherited]
    /// Where to say "ready" to the process this one replaces; nil when none waits.
    private var readyFD: Int32?

    /// Reads (and clears, so no child inherits them) the variables of either protocol.
    init() {
        var descriptors: [Int32] = []
        if let list = Self.take(Self.listenVariable) {
            descriptors = list.split(separator: ",").compactMap { Int32($0) }
        } else if let pid = Self.take("LISTEN_PID"), Int32(pid) == getpid(), let count = Self.take("LISTEN_FDS").flatMap({ Int32($0) }) {
            descriptors = Array(3..<(3 + max(0, min(count, 1024))))
            _ = Self.take("LISTEN_FDNAMES")
        }
        readyFD = Self.take(Self.readyVariable).flatMap { Int32($0) }
        _ = Self.upgradedFrom
        unsetenv(Self.fromVariable)
        available = descriptors.compactMap { fd in
            var listening: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening == 1,
                  let address = Socket.localAddress(fd) else { return nil }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            // systemd passes blocking sockets; an accept loop runs until EAGAIN.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            return Inherited(fd: fd, address: address)
        }
    }

    /// Up to `count` inherited sockets listening on `address` (a port of 0 takes any port on
    /// the same host), in the order they were passed.
    func take(_ address: SocketAddress, count: Int) -> [Int32] {
        var taken: [Int32] = []
        available.removeAll { socket in
            guard taken.count < count else { return false }
            let matches = socket.address == address || (address.port == 0 && socket.address.host == address.host)
            if matches { taken.append(socket.fd) }
            return matches
        }
        return taken
    }

    /// Serving: the process this one replaces may stop accepting. Sockets nobody took (a
    /// listener removed from the config, fewer workers) are closed.
    func ready() -> [SocketAddress] {
        let unused = available.map(\.address)
        for socket in available { Syscall.close(socket.fd) }
        available.removeAll()
        if let fd = readyFD {
            let message = Array("ready\n".utf8)
            _ = message.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            Syscall.close(fd)
            readyFD = nil
        }
        return unused
    }

    private static func take(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        unsetenv(name)
        return text
    }
}
