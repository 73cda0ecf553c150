import CLinuxShims
import Glibc

/// The one place Switchyard calls libc for I/O. Every wrapper retries `EINTR`, turns
/// `EAGAIN` into `.wouldBlock` where that can happen, traps on `EBADF`/`EFAULT` (those are
/// our own bugs, never the peer's) and throws the rest as `SystemError`.
///
/// The wrappers are `@inline(never)` so that nothing ARC inserts between the call and the
/// `errno` read can clobber `errno`.
public enum Syscall {
    @inline(never)
    public static func call(_ name: String, _ body: () -> Int) throws(SystemError) -> Int {
        while true {
            let result = body()
            if result >= 0 { return result }
            let err = sy_errno()
            if err == EINTR { continue }
            precondition(err != EBADF && err != EFAULT, "\(name) failed with \(err): a bug in Switchyard")
            throw SystemError(name, errno: err)
        }
    }

    @inline(never)
    static func nonBlocking(_ name: String, _ body: () -> Int) throws(SystemError) -> IOResult {
        while true {
            let result = body()
            if result >= 0 { return .processed(result) }
            let err = sy_errno()
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            precondition(err != EBADF && err != EFAULT, "\(name) failed with \(err): a bug in Switchyard")
            throw SystemError(name, errno: err)
        }
    }

    public static func read(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int) throws(SystemError) -> IOResult {
        try nonBlocking("read") { Glibc.read(fd, pointer, count) }
    }

    public static func write(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) throws(SystemError) -> IOResult {
        // send with MSG_NOSIGNAL: a peer that went away must never raise SIGPIPE.
        try nonBlocking("send") { Glibc.send(fd, pointer, count, Int32(MSG_NOSIGNAL)) }
    }

    public static func close(_ fd: Int32) {
        // close(2) must not be retried on EINTR on Linux: the descriptor is gone either way.
        _ = Glibc.close(fd)
    }

    public static func socket(_ family: Int32, _ type: Int32) throws(SystemError) -> Int32 {
        let type = type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        return Int32(try call("socket") { Int(Glibc.socket(family, type, 0)) })
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var value = value
        _ = try call("setsockopt") {
            Int(Glibc.setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)))
        }
    }

    /// Accepts one connection and its peer address; `nil` when the backlog is empty.
    public static func accept(_ fd: Int32) throws(SystemError) -> (fd: Int32, peer: SocketAddress?)? {
        var address = sockaddr_storage()
        while true {
            let result = sy_accept4(fd, &address)
            if result >= 0 {
                let peer = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0) }
                }
                return (result, peer)
            }
            let err = sy_errno()
            switch err {
            case EINTR, ECONNABORTED, EPROTO: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default:
                precondition(err != EBADF && err != EFAULT, "accept4 failed with \(err): a bug in Switchyard")
                throw SystemError("accept4", errno: err)
            }
        }
    }

    public static func eventfd() throws(SystemError) -> Int32 {
        Int32(try call("eventfd") { Int(sy_eventfd()) })
    }

    public static func timerfd() throws(SystemError) -> Int32 {
        Int32(try call("timerfd_create") { Int(sy_timerfd()) })
    }

    /// Arms a periodic timer firing every `intervalMs`.
    public static func armPeriodic(_ fd: Int32, intervalMs: Int) throws(SystemError) {
        let interval = timespec(tv_sec: intervalMs / 1000, tv_nsec: (intervalMs % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: interval, it_value: interval)
        _ = try call("timerfd_settime") { Int(timerfd_settime(fd, 0, &spec, nil)) }
    }

    /// Arms a timer to fire once after `afterMs`, replacing an earlier setting.
    public static func armOnce(_ fd: Int32, afterMs: Int) throws(SystemError) {
        let zero = timespec(tv_sec: 0, tv_nsec: 0)
        let value = timespec(tv_sec: afterMs / 1000, tv_nsec: (afterMs % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: zero, it_value: value)
        _ = try call("timerfd_settime") { Int(timerfd_settime(fd, 0, &spec, nil)) }
    }

    /// Reads and discards an eventfd or timerfd counter.
    public static func drainCounter(_ fd: Int32) {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }

    /// Adds one to an eventfd counter, waking the loop that polls it.
    public static func signalCounter(_ fd: Int32) {
        var value: UInt64 = 1
        _ = Glibc.write(fd, &value, 8)
    }

    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }
}
