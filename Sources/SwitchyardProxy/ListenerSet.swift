import SwitchyardIO
import SwitchyardTLS

/// A worker's listening sockets (its own, with `SO_REUSEPORT`): their table tokens, the TLS
/// setup of each TLS listener, and those paused because `accept` failed for lack of
/// descriptors or memory. A level-triggered listener would report the same failure at once
/// again, so a paused one waits for the next tick.
struct ListenerSet {
    typealias Listener = (fd: Int32, token: UInt64)

    private(set) var open: [Listener] = []
    private var paused: [Listener] = []
    /// The descriptors in the config's order, which certificate reloads name them by.
    private let fds: [Int32]
    private var tls: [Int32: TLSServerContext] = [:]
    /// Accept failures, reported at most once a second.
    var exhaustionReports = ReportThrottle()
    /// Connections refused over `limits.max_connections`, the same.
    var limitReports = ReportThrottle()

    /// `tls[i]` is the setup of `fds[i]`, nil for a plain listener.
    init(fds: [Int32], tls: [TLSServerContext?]) {
        self.fds = fds
        for (fd, context) in zip(fds, tls) { self.tls[fd] = context }
    }

    mutating func opened(_ fd: Int32, token: UInt64) {
        open.append((fd, token))
    }

    /// The TLS setup connections accepted on `fd` get; nil for a plain listener.
    func tls(of fd: Int32) -> TLSServerContext? { tls[fd] }

    /// New certificates for the listener at `index` in the config's order: new handshakes use
    /// them, connections already open keep theirs.
    mutating func replaceCertificates(listener index: Int, with context: TLSServerContext) {
        if index < fds.count { tls[fds[index]] = context }
    }

    /// Stops watching `fd` until `resume`; false when that failed (the listener stays as it was).
    mutating func pause(_ listener: Listener, selector: Selector) -> Bool {
        guard (try? selector.setInputEnabled(listener.fd, token: listener.token, false)) != nil else { return false }
        paused.append(listener)
        return true
    }

    /// Watches the paused listeners again.
    mutating func resume(selector: Selector) {
        for listener in paused {
            try? selector.setInputEnabled(listener.fd, token: listener.token, true)
        }
        paused.removeAll(keepingCapacity: true)
    }

    /// Closes them all. Their table slots go too: an event for one still queued in this
    /// `epoll_wait` batch must not reach `accept` on a closed descriptor.
    mutating func close<T>(selector: Selector, table: inout RegistrationTable<T>) {
        for listener in open {
            selector.deregister(listener.fd)
            table.remove(listener.token)
            Syscall.close(listener.fd)
        }
        open.removeAll()
        paused.removeAll()
    }
}
