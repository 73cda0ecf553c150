import CLinuxShims
import Glibc
import Logging

/// Tells systemd (a `Type=notify` unit) how the process is doing, by the sd_notify(3)
/// protocol: one datagram to the socket named in `NOTIFY_SOCKET`. Written here rather than
/// linked from libsystemd: it is a sendto, and the binary stays free of one more library.
enum ServiceManager {
    /// The socket systemd listens on; nil when not run by systemd (or by one that waits for
    /// no notification).
    static let socket: String? = getenv("NOTIFY_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }

    /// `READY=1`: the listeners are open and the first configuration is loaded.
    static func ready(_ logger: Logger) { send("READY=1\nMAINPID=\(getpid())\nSTATUS=serving", logger) }
    /// `RELOADING=1` for a SIGHUP, followed by `ready` when it is done.
    static func reloading(_ logger: Logger) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int(now.tv_sec) * 1_000_000 + now.tv_nsec / 1000)", logger)
    }
    /// `MAINPID=`: after an upgrade, the new process is the service's main process.
    static func mainPID(_ pid: pid_t, _ logger: Logger) { send("MAINPID=\(pid)", logger) }
    /// `STOPPING=1`: a drain began.
    static func stopping(_ logger: Logger) { send("STOPPING=1\nSTATUS=draining", logger) }

    private static func send(_ message: String, _ logger: Logger) {
        guard let socket else { return }
        if sy_notify_send(socket, message) != 0 {
            logger.warning("cannot notify systemd at NOTIFY_SOCKET=\(socket) (errno \(errno))")
        }
    }
}
