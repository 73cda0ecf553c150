import CLinuxShims
import Glibc

/// Readiness kinds reported by the selector.
public struct Readiness: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = Readiness(rawValue: 1 << 0)
    public static let writable = Readiness(rawValue: 1 << 1)
    /// The peer closed its side or the socket failed: a read will say which.
    public static let hangup = Readiness(rawValue: 1 << 2)
}

/// An epoll instance with a fixed array of event slots.
///
/// Sockets are registered **edge-triggered** for input and output once, for their whole life.
/// Level-triggered epoll would make us switch `EPOLLOUT` on and off (one `epoll_ctl` per
/// partial write) and stop reading a side under backpressure by changing its interest (another
/// `epoll_ctl`); edge-triggered needs no `epoll_ctl` after registration. The price is that a
/// connection must remember "still readable" itself when it stops reading early
/// (backpressure), which the connection state machines do.
///
/// Each registration carries a 64-bit token chosen by the owner (slot index and generation),
/// so an event for a descriptor that was closed and reused in the same batch is recognised.
public final class Selector {
    public let fd: Int32
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity: Int

    public init(capacity: Int = 512) throws(SystemError) {
        self.fd = Int32(try Syscall.call("epoll_create1") { Int(epoll_create1(Int32(EPOLL_CLOEXEC))) })
        self.capacity = capacity
        self.events = .allocate(capacity: capacity)
    }

    deinit {
        events.deallocate()
        Syscall.close(fd)
    }

    /// Registers `descriptor` for edge-triggered input and output.
    public func register(_ descriptor: Int32, token: UInt64) throws(SystemError) {
        let mask = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        try control(EPOLL_CTL_ADD, descriptor, mask: mask, token: token)
    }

    /// Registers `descriptor` level-triggered for input only (listeners, eventfd, timerfd, inotify).
    public func registerInput(_ descriptor: Int32, token: UInt64) throws(SystemError) {
        try control(EPOLL_CTL_ADD, descriptor, mask: EPOLLIN.rawValue, token: token)
    }

    /// Stops or restarts reporting input on a descriptor registered with `registerInput`
    /// (a listener that ran out of descriptors waits for the next timer tick).
    public func setInputEnabled(_ descriptor: Int32, token: UInt64, _ enabled: Bool) throws(SystemError) {
        try control(EPOLL_CTL_MOD, descriptor, mask: enabled ? EPOLLIN.rawValue : 0, token: token)
    }

    public func deregister(_ descriptor: Int32) {
        var event = epoll_event()
        _ = epoll_ctl(fd, EPOLL_CTL_DEL, descriptor, &event)
    }

    private func control(_ op: Int32, _ descriptor: Int32, mask: UInt32, token: UInt64) throws(SystemError) {
        var event = epoll_event()
        sy_epoll_event_set(&event, mask, token)
        _ = try Syscall.call("epoll_ctl") { Int(epoll_ctl(fd, op, descriptor, &event)) }
    }

    /// Waits up to `timeoutMs` (-1: forever); returns how many registrations are ready.
    /// Read them with `event(at:)` before the next wait.
    public func wait(timeoutMs: Int32) throws(SystemError) -> Int {
        try Syscall.call("epoll_wait") { Int(epoll_wait(fd, events, Int32(capacity), timeoutMs)) }
    }

    /// The token and readiness of the `index`th event of the last wait.
    @inline(__always)
    public func event(at index: Int) -> (token: UInt64, readiness: Readiness) {
        let raw = sy_epoll_event_events(events, Int32(index))
        var readiness: Readiness = []
        if raw & (EPOLLIN.rawValue | EPOLLPRI.rawValue) != 0 { readiness.insert(.readable) }
        if raw & EPOLLOUT.rawValue != 0 { readiness.insert(.writable) }
        if raw & (EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 {
            readiness.insert(.hangup)
        }
        return (sy_epoll_event_data(events, Int32(index)), readiness)
    }
}
