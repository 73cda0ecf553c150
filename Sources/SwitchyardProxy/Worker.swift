import CLinuxShims
import Glibc
import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// What a selector token refers to on a worker.
enum Registration {
    case listener(Int32)
    case mailbox
    case tick
    case downstream(DownstreamConnection)
    case h2(H2Connection)
    case upstream(UpstreamConnection)
    case call(H2UpstreamConnection)
    case lingering(LingeringSocket)
}

/// Messages the control thread posts to a worker.
enum WorkerMessage: Sendable {
    /// Route new requests with this publication.
    case publish(Publication)
    /// New certificates for the TLS listener at this index (in `listeners` order).
    case certificates(listener: Int, TLSServerContext)
    /// Stop accepting; finish in-flight requests; exit when no client connection is left.
    case drain
    /// Exit now (the drain timeout passed).
    case stop
}

/// One event-loop thread: its own listeners (`SO_REUSEPORT`), client connections, backend
/// pools, timer and random generator. Nothing on the request path is shared with another thread.
///
/// `@unchecked Sendable` is safe because after `start()` every mutable field is touched only by
/// the worker's own thread; other threads see only its `handle` (`mailbox` and `stats`).
final class Worker: @unchecked Sendable {
    let id: Int
    let settings: ProxySettings
    let mailbox: Mailbox<WorkerMessage>
    let controlMailbox: Mailbox<ControlMessage>
    /// What the control thread reads, copied out on the tick.
    let stats: WorkerStats
    var handle: WorkerHandle { WorkerHandle(id: id, mailbox: mailbox, stats: stats) }

    let selector: Selector
    private let tickFD: Int32
    private var listeners: ListenerSet
    /// The 503 for connections over `limits.max_connections`, rendered once.
    private static let overLimitAnswer: [UInt8] = {
        let answer = ByteBuffer(pool: BufferPool(blockSize: 4096, maxFree: 0))
        ErrorRenderer.http1(
            .tooManyConnections, message: "the proxy is at limits.max_connections; try again",
            context: .init(close: true), into: answer)
        return Array(answer.readableBytes)
    }()
    /// What the request path counts, copied to `stats` on the tick.
    var tally = WorkerTally()
    var exchanges: ExchangePool
    var h2Streams: H2StreamPool
    /// Where the HTTP/2 sessions of this worker build response heads.
    let h2HeadBuilder = H2HeadBuilder()
    /// nghttp2's memory for this worker's sessions.
    let h2Allocator = H2Allocator()
    var table: RegistrationTable<Registration>
    var routes: WorkerRoutes
    var pools = UpstreamPools()
    var random: FastRandom
    let buffers: BufferPools
    /// The monotonic clock, read once per wake-up: in ns for exchange timings, in ms for deadlines.
    var nowNs: UInt64
    var now: UInt64
    /// Client, backend and lingering sockets, and the HTTP/2 streams waiting for a backend socket.
    var descriptors: DescriptorBudget<Exchange>
    /// Where lingering sockets (`Worker+Linger`) are read to.
    var lingerScratch = [UInt8](repeating: 0, count: 4096)
    var draining = false
    private var stopped = false
    private var expired: [Registration] = []
    /// HTTP/2 connections to serve once the current batch of events is handled.
    var scheduledHTTP2: [H2Connection] = []
    /// Connections to gRPC backends to serve then.
    var scheduledCalls: [H2UpstreamConnection] = []
    /// Connections that used their turn's `readBudget` with bytes still waiting, served again
    /// after the next round of events (`yieldedTurn` is the round being served).
    private var yielded: [Registration] = []
    private var yieldedTurn: [Registration] = []
    /// Calls whose deadline passed, found on a tick.
    private var expiredCalls: [Exchange] = []
    /// This worker's side of the access log; nil when it is off.
    let accessLog: WorkerAccessLog?

    /// Timeouts are checked on a 100 ms tick by scanning connections: per request a deadline
    /// is one store, and a scan of 10,000 connections takes about 6 µs (micro benchmark
    /// `DeadlineScan10k`), 0.006 % of a core. A timing wheel would make every deadline store
    /// dearer to save that, so there is none.
    static let tickMs = 100
    /// Stop reading a side while this many of its bytes wait for the other side to take them.
    static let highWaterMark = 256 * 1024
    /// The same for a backend response to an HTTP/2 stream: a connection carries up to
    /// `http2.max_concurrent_streams` of them, and its client's windows pace them all.
    static let streamHighWaterMark = 64 * 1024
    /// Bytes one connection may read in one turn. A connection with more waiting yields: the
    /// other connections' events are handled before its next turn, so a client that floods
    /// frames or pipelined requests shares the worker instead of holding it (nginx and HAProxy
    /// bound the work per event the same way). 64 KiB is four reads, about 7,000 nine-byte
    /// HTTP/2 frames.
    static let readBudget = 64 * 1024

    init(
        id: Int, settings: ProxySettings, listenerFDs: [Int32], publication: Publication,
        controlMailbox: Mailbox<ControlMessage>, accessLog: AccessLogWriter? = nil, listenerTLS: [TLSServerContext?] = []
    ) throws(SystemError) {
        self.id = id
        self.listeners = ListenerSet(fds: listenerFDs, tls: listenerTLS)
        let stats = WorkerStats(descriptorBudget: settings.descriptorBudget)
        self.stats = stats
        self.accessLog = accessLog.map { WorkerAccessLog(writer: $0, worker: id, stats: stats) }
        self.controlMailbox = controlMailbox
        self.settings = settings
        self.mailbox = try Mailbox()
        self.selector = try Selector()
        self.tickFD = try Syscall.timerfd()
        self.descriptors = DescriptorBudget(limit: settings.descriptorBudget)
        self.table = RegistrationTable(capacity: 1024)
        let buffers = BufferPools()
        self.buffers = buffers
        self.exchanges = ExchangePool(headPool: buffers.output)
        self.h2Streams = H2StreamPool(buffers: buffers)
        self.random = FastRandom(seed: Clock.nowNs() &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(id))
        self.nowNs = Clock.nowNs()
        self.now = nowNs / 1_000_000
        self.routes = WorkerRoutes(publication: publication, endpoints: [], stats: [])
        self.routes = makeRoutes(publication)

        stats.appliedGeneration.store(publication.snapshot.generation, ordering: .relaxed)

        for fd in listenerFDs {
            let token = table.insert(.listener(fd))
            try selector.registerInput(fd, token: token)
            listeners.opened(fd, token: token)
        }
        try selector.registerInput(mailbox.eventFD, token: table.insert(.mailbox))
        try Syscall.armPeriodic(tickFD, intervalMs: Self.tickMs)
        try selector.registerInput(tickFD, token: table.insert(.tick))
    }

    deinit {
        Syscall.close(tickFD)
    }

    /// Runs the loop on the calling thread until the worker is stopped or drained.
    func run() {
        while !stopped {
            let count: Int
            do {
                // Connections that yielded are served again after the events already waiting.
                count = try selector.wait(timeoutMs: yielded.isEmpty ? -1 : 0)
            } catch {
                preconditionFailure("epoll_wait failed: \(error)")
            }
            nowNs = Clock.nowNs()
            now = nowNs / 1_000_000
            for index in 0..<count {
                let (token, readiness) = selector.event(at: index)
                dispatch(token, readiness)
            }
            if !yielded.isEmpty { serveYielded() }
            if descriptors.waiting > 0 { admitDescriptorWaiters() }
            if !scheduledHTTP2.isEmpty || !scheduledCalls.isEmpty { serveScheduled() }
            if draining && descriptors.clients == 0 { stopped = true }
        }
        closeEverything()
        accessLog?.flush(final: true)
        controlMailbox.post(.workerFinished(id))
    }

    /// Puts a connection that stopped at `readBudget` in the next round; it stays `readable`.
    func yieldTurn(_ registration: Registration) {
        yielded.append(registration)
    }

    /// One more turn for each connection that yielded in the last round. One that uses this
    /// turn's budget too goes into the next round.
    private func serveYielded() {
        swap(&yielded, &yieldedTurn)
        for registration in yieldedTurn {
            switch registration {
            case .downstream(let d):
                d.yielded = false
                if !d.closed { serveDownstream(d) }
            case .h2(let c):
                c.yielded = false
                if !c.closed { serveHTTP2(c) }
            case .upstream(let u):
                u.yielded = false
                if !u.closed {
                    let client = u.exchange?.client
                    readUpstream(u)
                    if let client { serveClient(client) }
                }
            case .call(let g):
                g.yielded = false
                if !g.closed { serveCall(g) }
            case .listener, .mailbox, .tick, .lingering:
                break
            }
        }
        yieldedTurn.removeAll(keepingCapacity: true)
    }

    private func dispatch(_ token: UInt64, _ readiness: Readiness) {
        switch table.lookup(token) {
        case .downstream(let connection): downstreamEvent(connection, readiness)
        case .upstream(let connection): upstreamEvent(connection, readiness)
        case .h2(let connection): h2Event(connection, readiness)
        case .call(let connection): callEvent(connection, readiness)
        case .lingering(let socket): drainLingering(socket)
        case .listener(let fd): acceptConnections(fd, token: token)
        case .mailbox: handleMailbox()
        case .tick:
            Syscall.drainCounter(tickFD)
            if !draining { listeners.resume(selector: selector) }
            expireDeadlines()
            expireDescriptorWaiters()
            publishCounters()
            accessLog?.flush()
        case nil: break
        }
    }

    // MARK: - Accepting

    private func acceptConnections(_ listenerFD: Int32, token: UInt64) {
        // A bounded batch keeps one busy listener from starving the connections already open.
        for _ in 0..<64 {
            let accepted: (fd: Int32, peer: SocketAddress?)?
            do {
                accepted = try Syscall.accept(listenerFD)
            } catch {
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: out of resources. The listener stays readable,
                // so it is paused until the next tick rather than reported again at once.
                pauseListener((listenerFD, token), error: error)
                return
            }
            guard let (fd, peer) = accepted else { return }
            if descriptors.clients >= settings.maxConnectionsPerWorker || draining {
                refuseOverLimit(fd, tls: listeners.tls(of: listenerFD) != nil)
                continue
            }
            Socket.setNoDelay(fd)
            let transport: PeerTransport
            var firstWaitMs: UInt64?
            if let tls = listeners.tls(of: listenerFD) {
                guard let connection = tls.accept(fd: fd) else {
                    Syscall.close(fd)
                    continue
                }
                transport = .tls(connection)
                firstWaitMs = settings.tlsHandshakeMs
            } else {
                transport = .plain(SocketTransport(fd: fd))
            }
            let machine = H1ServerMachine(limits: settings.headLimits, timeouts: settings.serverTimeouts, now: now, firstWaitMs: firstWaitMs)
            let connection = DownstreamConnection(
                transport: transport, clientAddress: Array((peer?.host ?? "unknown").utf8), buffers: buffers,
                machine: machine, acceptedAt: nowNs)
            connection.mayBeHTTP2 = settings.http2 != nil
            guard let token = register(fd, .downstream(connection)) else { continue }
            connection.token = token
            descriptors.clients += 1
        }
    }

    /// A connection beyond `limits.max_connections`: answered 503 in one write on a plain listener (a new socket
    /// has room for it), counted, reported at most once a second, closed.
    private func refuseOverLimit(_ fd: Int32, tls: Bool) {
        // Safe because the rendered answer is never empty. A TLS client could not read it
        // before a handshake, which would cost what the limit protects: it is just closed.
        if !tls {
            _ = Self.overLimitAnswer.withUnsafeBytes { try? Syscall.write(fd, $0.baseAddress.unsafelyUnwrapped, $0.count) }
        }
        linger(fd: fd, token: 0)
        tally.counters.refusedConnections += 1
        if listeners.limitReports.mayReport(now: now) {
            controlMailbox.post(.connectionLimitReached(worker: id, limit: settings.maxConnectionsPerWorker))
        }
    }

    private func pauseListener(_ listener: ListenerSet.Listener, error: SystemError) {
        guard listeners.pause(listener, selector: selector), listeners.exhaustionReports.mayReport(now: now) else { return }
        controlMailbox.post(.acceptFailed(worker: id, error: error.description))
    }

    /// Adds a connection's socket to the table and the selector; on failure closes the socket
    /// and returns nil.
    func register(_ fd: Int32, _ registration: Registration) -> UInt64? {
        let token = table.insert(registration)
        do {
            try selector.register(fd, token: token)
            return token
        } catch {
            table.remove(token)
            Syscall.close(fd)
            return nil
        }
    }

    // MARK: - Mailbox

    private func handleMailbox() {
        for message in mailbox.drain() {
            switch message {
            case .publish(let publication):
                routes = makeRoutes(publication)
                closeTunnelsOfRemovedTokens()
                stats.applied(generation: publication.snapshot.generation)
            case .certificates(let index, let context):
                listeners.replaceCertificates(listener: index, with: context)
            case .drain:
                startDraining()
            case .stop:
                stopped = true
            }
        }
    }

    /// Builds this worker's view of a publication, keeping pools of endpoints that stay.
    private func makeRoutes(_ publication: Publication) -> WorkerRoutes {
        let (endpoints, retired) = pools.adopt(publication)
        for pool in retired {
            for connection in pool.idle { closeUpstream(connection) }
            pool.idle.removeAll()
            for connection in pool.multiplexed {
                connection.retiring = true
                callsChanged(connection)
            }
        }
        // A draining backend gets no new requests; its idle connections would only be closed by it.
        for group in endpoints.map(\.http) where group.draining != EndpointSet() {
            for (index, pool) in group.pools.enumerated() where group.draining.contains(index) {
                for connection in pool.idle { closeUpstream(connection) }
                pool.idle.removeAll()
            }
        }
        let stats = publication.snapshot.versions.map { tally.cell(for: $0.name) }
        return WorkerRoutes(publication: publication, endpoints: endpoints, stats: stats)
    }

    /// Copies the socket counts out for `/status`, and the tally when it changed.
    private func publishCounters() {
        stats.clientConnections.store(descriptors.clients, ordering: .relaxed)
        stats.backendSockets.store(descriptors.backendSockets, ordering: .relaxed)
        tally.publish(to: stats) {
            var failures: [EndpointFailures] = []
            for (index, version) in routes.snapshot.versions.enumerated() {
                for pool in routes.endpoints[index].http.pools where pool.connectFailures > 0 {
                    failures.append(EndpointFailures(version: version.name, endpoint: pool.address.description, failures: pool.connectFailures))
                }
            }
            return failures
        }
    }

    // MARK: - Draining and stopping

    /// A tunnel outlives its request, so its token is checked again when the tokens change.
    private func closeTunnelsOfRemovedTokens() {
        guard let tokens = routes.snapshot.tokens else { return }
        var revoked: [DownstreamConnection] = []
        table.forEach { registration in
            if case .downstream(let connection) = registration, connection.machine.state == .tunnel,
               let hash = connection.exchange?.tunnelTokenHash, !tokens.contains(hash: hash) {
                revoked.append(connection)
            }
        }
        for connection in revoked { closeDownstream(connection) }
    }

    private func startDraining() {
        guard !draining else { return }
        draining = true
        listeners.close(selector: selector, table: &table)
        // Idle client connections close after a short grace (a request already sent in it
        // is answered, with Connection: close); busy ones close after their current response.
        // HTTP/2 connections get GOAWAY: their streams finish, no new ones start.
        var multiplexed: [H2Connection] = []
        let now = self.now
        table.forEach { registration in
            if case .downstream(let connection) = registration {
                connection.machine.draining(now: now)
            } else if case .h2(let connection) = registration {
                multiplexed.append(connection)
            }
        }
        for connection in multiplexed { goAway(connection, .drain) }
    }

    private func closeEverything() {
        var downstreams: [DownstreamConnection] = []
        var upstreams: [UpstreamConnection] = []
        var multiplexed: [H2Connection] = []
        var calls: [H2UpstreamConnection] = []
        var lingering: [LingeringSocket] = []
        table.forEach { registration in
            switch registration {
            case .lingering(let socket): lingering.append(socket)
            case .downstream(let connection): downstreams.append(connection)
            case .h2(let connection): multiplexed.append(connection)
            case .upstream(let connection): upstreams.append(connection)
            case .call(let connection): calls.append(connection)
            default: break
            }
        }
        for connection in downstreams { closeDownstream(connection) }
        for connection in multiplexed { closeHTTP2(connection) }
        for connection in calls { closeCallConnection(connection, message: nil) }
        for socket in lingering { closeLingering(socket) }
        for connection in upstreams where connection.token != 0 { closeUpstream(connection) }
        listeners.close(selector: selector, table: &table)
    }

    // MARK: - Timeouts

    /// Closes what timed out; on the way, HTTP/2 sessions quiet for a tick give their idle
    /// pages back (`H2Session.restIfQuiet`).
    private func expireDeadlines() {
        expired.removeAll(keepingCapacity: true)
        let now = self.now
        table.forEach { registration in
            switch registration {
            case .downstream(let connection) where connection.deadline != 0 && connection.deadline <= now:
                expired.append(registration)
            case .upstream(let connection) where connection.deadline != 0 && connection.deadline <= now:
                expired.append(registration)
            case .h2(let connection):
                connection.session.restIfQuiet()
                if connection.deadline != 0 && connection.deadline <= now { expired.append(registration) }
            case .lingering(let socket) where socket.deadline <= now:
                expired.append(registration)
            case .call(let connection):
                connection.session.restIfQuiet()
                if connection.deadline != 0 && connection.deadline <= now { expired.append(registration) }
                for x in connection.calls.values where x.callDeadline != 0 && x.callDeadline <= now { expiredCalls.append(x) }
            default:
                break
            }
        }
        for x in expiredCalls where x.call != nil { callTimedOut(x) }
        expiredCalls.removeAll(keepingCapacity: true)
        for registration in expired {
            switch registration {
            case .downstream(let connection): downstreamTimedOut(connection)
            case .upstream(let connection): upstreamTimedOut(connection)
            case .h2(let connection): h2TimedOut(connection)
            case .call(let connection): callConnectionTimedOut(connection)
            case .lingering(let socket): closeLingering(socket)
            default: break
            }
        }
        expired.removeAll(keepingCapacity: true)
    }

    func nextRandom() -> UInt64 { random.next() }
}
