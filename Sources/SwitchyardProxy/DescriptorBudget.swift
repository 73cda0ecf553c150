/// One descriptor budget per worker for client and backend sockets alike: what the worker's
/// sockets count against it, and the HTTP/2 streams waiting for a backend socket.
///
/// An HTTP/1.1 client needs at most one backend socket, and client connections are limited
/// to half the budget (`limits.max_connections`, derived from the descriptor limit), so those
/// always fit. An HTTP/2 client's streams each need one: a stream opens a backend socket only
/// while the budget leaves one for every HTTP/1.1 client besides; otherwise it waits in a
/// bounded queue (first come, first served) until a socket closes, at most
/// `timeouts.connect_ms` (as HAProxy's `timeout queue` defaults to `timeout connect`), then it
/// gets 503 too_many_connections. Never a 502, and no endpoint is blamed: running out of
/// descriptors is the proxy's limit, not the backend's fault.
///
/// Bookkeeping only: the worker opens and closes the sockets and answers the streams
/// (`Worker+Descriptors`).
struct DescriptorBudget<Waiter: AnyObject> {
    /// Streams waiting for a backend socket, at most.
    static var maxWaiters: Int { 4096 }
    /// Sockets lingering at once, at most (`Worker+Linger`); beyond, they are closed at once.
    static var maxLingering: Int { 256 }

    /// Descriptors this worker may hold.
    let limit: Int
    /// Client connections; of them, HTTP/2 connections.
    var clients = 0
    var http2Clients = 0
    /// Open backend sockets (HTTP/1.1 connections, pooled or busy, and gRPC connections).
    var backendSockets = 0
    /// Client sockets lingering after an answer.
    var lingering = 0

    /// The queue, from `head` on (a slot before it is taken; the array is emptied, its
    /// storage kept, once all are).
    private var waiters: [Waiter] = []
    private var head = 0
    private var shortageReports = ReportThrottle()

    init(limit: Int) {
        self.limit = limit
    }

    /// Whether a backend socket may be opened for an HTTP/2 stream now, with one kept for each
    /// HTTP/1.1 client connection.
    var backendSocketFree: Bool {
        let http1Clients = clients - http2Clients
        return clients + http1Clients + backendSockets + lingering < limit
    }

    /// Whether one more socket may linger.
    var mayLinger: Bool { lingering < Self.maxLingering }

    var waiting: Int { waiters.count - head }

    /// The stream that waited longest.
    var oldest: Waiter? { head < waiters.count ? waiters[head] : nil }

    /// Queues a stream; false when `maxWaiters` wait already.
    mutating func wait(_ waiter: Waiter) -> Bool {
        guard waiting < Self.maxWaiters else { return false }
        waiters.append(waiter)
        return true
    }

    /// Takes the oldest stream off the queue.
    mutating func removeOldest() {
        guard head < waiters.count else { return }
        head += 1
        if head == waiters.count {
            waiters.removeAll(keepingCapacity: true)
            head = 0
        }
    }

    /// Whether a shortage is worth telling the control thread now: at most once a second.
    mutating func mayReportShortage(now: UInt64) -> Bool {
        shortageReports.mayReport(now: now)
    }
}
