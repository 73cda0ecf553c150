import CLinuxShims
import Glibc
import Logging
import Synchronization
import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting

/// What workers tell the control thread.
enum ControlMessage: Sendable {
    case workerFinished(Int)
    /// A worker could not accept connections (out of descriptors or memory) and paused its
    /// listener briefly; sent at most once a second per worker.
    case acceptFailed(worker: Int, error: String)
    /// A worker refused connections (503) at its share of `limits.max_connections`; sent at
    /// most once a second per worker.
    case connectionLimitReached(worker: Int, limit: Int)
    /// The resolver thread's answer to the request with this ticket.
    case resolved(ticket: UInt64, result: Result<ConfigLoader.Resolution, LoadError>)
    /// A worker could not connect to an endpoint and skips it for `backoffMs`.
    case endpointEjected(worker: Int, address: SocketAddress, failures: Int, backoffMs: UInt64)
    /// The health prober's answer about one endpoint.
    case probed(HealthBook.Key, ProbeResult)
}

/// The control thread: signals, file watching and reloads, the admin API, shutdown.
/// Runs its own epoll loop; never on the request path.
final class ControlPlane {
    private enum Source {
        case signals
        case watcher
        case mailbox
        case drainTimer
        case sweepTimer
        case settleTimer
        case resolveTimer(Int32)
        case adminListener
        case admin(AdminConnection)
    }

    let loader: ConfigLoader
    let logger: Logger
    private var state: ReloadState
    private let workers: [Worker]
    let mailbox: Mailbox<ControlMessage>
    private let selector: Selector
    private let signalFD: Int32
    private let watcher: FileWatcher
    private let adminFD: Int32
    private var drainTimerFD: Int32 = -1
    private let sweepTimerFD: Int32
    /// Fires once, `settleMs` after a reload found an invalid file, to read it again.
    private let settleTimerFD: Int32
    private var settlingTrigger: String?
    private static let settleMs = 100
    private let resolver: Resolver
    private let prober: HealthProber
    private let accessLog: AccessLogWriter?
    /// The newest request to the resolver; older answers are dropped.
    private var resolveTicket: UInt64 = 0
    /// The versions config that request was about.
    private var resolvingVersions: VersionsConfig?
    /// An admin request must arrive complete within this time.
    private static let adminRequestMs: UInt64 = 5000
    private var sources: [UInt64: Source] = [:]
    private var nextToken: UInt64 = 1
    private var finishedWorkers = 0
    private var draining = false

    init(loader: ConfigLoader, state: ReloadState, workers: [Worker], mailbox: Mailbox<ControlMessage>,
         adminFD: Int32, accessLog: AccessLogWriter?, logger: Logger) throws(SystemError) {
        self.accessLog = accessLog
        self.loader = loader
        self.state = state
        self.workers = workers
        self.mailbox = mailbox
        self.adminFD = adminFD
        self.logger = logger
        self.selector = try Selector()
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] { sigaddset(&mask, signal) }
        self.signalFD = Int32(try Syscall.call("signalfd") {
            Int(signalfd(-1, &mask, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)))
        })
        self.watcher = try FileWatcher(paths: [loader.versionsPath] + (loader.tokensPath.map { [$0] } ?? []))
        self.sweepTimerFD = try Syscall.timerfd()
        self.settleTimerFD = try Syscall.timerfd()
        self.resolver = try Resolver(loader: loader, answers: mailbox)
        self.prober = try HealthProber(answers: mailbox)
        try add(signalFD, .signals)
        try add(watcher.fd, .watcher)
        try add(mailbox.eventFD, .mailbox)
        try add(adminFD, .adminListener)
        try Syscall.armPeriodic(sweepTimerFD, intervalMs: 1000)
        try add(sweepTimerFD, .sweepTimer)
        try add(settleTimerFD, .settleTimer)
        try resolver.start()
        try prober.start()
        updateProbes()
        if loader.server.resolveIntervalMs > 0 {
            let resolveTimerFD = try Syscall.timerfd()
            try Syscall.armPeriodic(resolveTimerFD, intervalMs: loader.server.resolveIntervalMs)
            try add(resolveTimerFD, .resolveTimer(resolveTimerFD))
        }
    }

    private func add(_ fd: Int32, _ source: Source) throws(SystemError) {
        let token = nextToken
        nextToken += 1
        sources[token] = source
        try selector.registerInput(fd, token: token)
    }

    /// Runs until every worker has finished after a drain (or the drain timeout).
    func run() {
        while finishedWorkers < workers.count {
            let count = (try? selector.wait(timeoutMs: -1)) ?? 0
            for index in 0..<count {
                let token = selector.event(at: index).token
                guard let source = sources[token] else { continue }
                switch source {
                case .signals: handleSignals()
                case .watcher: watchedFilesChanged()
                case .mailbox:
                    for message in mailbox.drain() {
                        switch message {
                        case .workerFinished: finishedWorkers += 1
                        case .resolved(let ticket, let result): resolved(ticket: ticket, result: result)
                        case .acceptFailed(let worker, let error):
                            logger.warning("""
                                worker \(worker) cannot accept connections (\(error)); retrying every \(Worker.tickMs) ms. \
                                Raise the descriptor limit (ulimit -n) or lower limits.max_connections
                                """)
                        case .endpointEjected(let worker, let address, let failures, let backoffMs):
                            logger.warning("""
                                worker \(worker): cannot connect to \(address) (\(failures) failed connect\(failures == 1 ? "" : "s") \
                                in a row); it gets no requests for \(backoffMs) ms unless no other endpoint of its version is left
                                """)
                            for version in state.versions.versions {
                                recordHealth(.failed("worker \(worker) could not connect"), .init(version: version.name, address: address), probed: false)
                            }
                        case .probed(let key, let result):
                            recordHealth(result, key, probed: true)
                        case .connectionLimitReached(let worker, let limit):
                            logger.warning("""
                                worker \(worker) is at its \(limit) client connections (limits.max_connections over \
                                \(workers.count) workers); new connections get 503 too_many_connections
                                """)
                        }
                    }
                case .drainTimer:
                    logger.warning("drain timeout reached; closing the remaining connections")
                    for worker in workers { worker.mailbox.post(.stop) }
                    Syscall.drainCounter(drainTimerFD)
                case .resolveTimer(let fd):
                    Syscall.drainCounter(fd)
                    requestResolution()
                case .settleTimer:
                    Syscall.drainCounter(settleTimerFD)
                    if let trigger = settlingTrigger {
                        settlingTrigger = nil
                        reload(trigger: trigger, tentative: false)
                    }
                case .sweepTimer:
                    Syscall.drainCounter(sweepTimerFD)
                    if !watcher.unwatched.isEmpty, rewatch() { reload(trigger: "watch restored") }
                    closeStalledAdminConnections()
                case .adminListener: acceptAdmin()
                case .admin(let connection): serveAdmin(connection, token: token)
                }
            }
        }
        accessLog?.stop(timeoutMs: 2000)
        logger.info("stopped")
    }

    private func handleSignals() {
        var info = signalfd_siginfo()
        while Glibc.read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            switch Int32(info.ssi_signo) {
            case SIGHUP:
                reportStaticChanges()
                reload(trigger: "SIGHUP", tentative: false)
                requestResolution()
            case SIGUSR1:
                if let accessLog { accessLog.reopen() } else { logger.info("SIGUSR1: no access log to reopen") }
            default: startDrain(signal: Int32(info.ssi_signo))
            }
        }
    }

    private func startDrain(signal: Int32) {
        guard !draining else { return }
        draining = true
        let drainMs = loader.server.timeouts.drainMs
        logger.info("signal \(signal): no longer accepting; draining in-flight requests for up to \(drainMs) ms")
        for worker in workers { worker.mailbox.post(.drain) }
        if let timer = try? Syscall.timerfd(), (try? Syscall.armPeriodic(timer, intervalMs: max(drainMs, 1))) != nil {
            drainTimerFD = timer
            try? add(timer, .drainTimer)
        }
    }

    /// switchyard.json is read at start only; on SIGHUP, say what in it changed since, so an
    /// edit that needs a restart is not silently ignored.
    private func reportStaticChanges() {
        do {
            let current = try ConfigLoader(configPath: loader.configPath).server
            let changed = current.changedSettings(from: loader.server)
            if !changed.isEmpty {
                logger.warning("""
                    \(loader.configPath) changed (\(changed.joined(separator: ", "))) since start; these settings \
                    apply only after a restart. SIGHUP reloads the versions and tokens files
                    """)
            }
        } catch {
            logger.warning("\(loader.configPath) is not valid now (\(error)); a restart with it would fail")
        }
    }

    /// Asks the resolver thread for the addresses of the versions file waiting to be published,
    /// or else for fresh addresses of the current versions' endpoints.
    private func requestResolution() {
        let versions = state.pendingVersions?.versions ?? state.versions
        resolveTicket += 1
        resolvingVersions = versions
        resolver.resolve(versions, ticket: resolveTicket)
    }

    private func resolved(ticket: UInt64, result: Result<ConfigLoader.Resolution, LoadError>) {
        // An answer superseded by a newer request, or about a versions config replaced since, is stale.
        guard ticket == resolveTicket else { return }
        if let pending = state.pendingVersions {
            guard resolvingVersions == pending.versions else { return }
            return publishResolvedVersions(result, trigger: pending.trigger)
        }
        guard resolvingVersions == state.versions else { return }
        switch result {
        case .failure(let error):
            logger.warning("resolving the endpoints again failed, keeping the addresses found before: \(error)")
        case .success(let resolution):
            guard let publication = state.apply(resolution) else { return }
            for endpoint in state.unresolved {
                logger.warning("\(loader.versionsPath): \(endpoint); left out until it resolves again")
            }
            distribute(publication)
            logger.info("endpoint addresses changed when resolved again: generation \(publication.snapshot.generation)")
        }
    }

    private func watchedFilesChanged() {
        let changes = watcher.drain()
        if changes.overflowed {
            logger.warning("the file watcher's event queue overflowed; re-reading every watched file")
        }
        for directory in changes.lost {
            logger.warning("lost the watch on \(directory) (moved, deleted or unmounted); watching it again as soon as it exists")
        }
        // A lost watch makes the change relevant: the reload below covers a restored one too.
        if !changes.lost.isEmpty { _ = rewatch() }
        if changes.relevant { reload(trigger: "file change") }
    }

    /// Watches lost directories again (tried at once, then every second); true if one came
    /// back, which may hold new files, so the caller re-reads everything.
    private func rewatch() -> Bool {
        let back = watcher.rewatch()
        for directory in back { logger.info("watching \(directory) again") }
        return !back.isEmpty
    }

    /// Reloads the hot files. A file change that reads as invalid is read once more after
    /// `settleMs` before it is reported: an in-place rewrite may be caught half-written, and
    /// its final content comes with its own close event anyway.
    func reload(trigger: String, tentative: Bool = true) {
        let wasFailing = state.lastOutcome.result == "error"
        defer { reportRecovery(wasFailing: wasFailing, trigger: trigger) }
        var failed = false
        var resolve = false
        let publication = state.reload(loader: loader, trigger: trigger, tentative: tentative, failed: &failed, resolve: &resolve)
        // A changed versions file is published once its names resolve, off this thread.
        if resolve { requestResolution() }
        if failed && tentative {
            settlingTrigger = trigger
            try? Syscall.armOnce(settleTimerFD, afterMs: Self.settleMs)
        } else if failed {
            for error in state.lastOutcome.errors {
                logger.error("reload (\(trigger)) rejected, keeping the last good configuration: \(error)")
            }
        }
        guard let publication else { return }
        announce(publication, trigger: trigger)
    }

    /// The resolver answered for a changed versions file: publish it, or say why it is rejected.
    private func publishResolvedVersions(_ result: Result<ConfigLoader.Resolution, LoadError>, trigger: String) {
        let wasFailing = state.lastOutcome.result == "error"
        defer { reportRecovery(wasFailing: wasFailing, trigger: trigger) }
        guard let publication = state.versionsResolved(result) else {
            for error in state.lastOutcome.errors {
                logger.error("reload (\(trigger)) rejected, keeping the last good configuration: \(error)")
            }
            return
        }
        for endpoint in state.unresolved {
            logger.warning("\(loader.versionsPath): \(endpoint); left out until it resolves again")
        }
        announce(publication, trigger: trigger)
    }

    /// After rejected reloads, the first good one says so: whoever fixed the file sees it worked.
    private func reportRecovery(wasFailing: Bool, trigger: String) {
        guard wasFailing, state.lastOutcome.result != "error", state.lastOutcome.trigger == trigger else { return }
        logger.info("reload recovered (\(trigger)): the hot files are valid again (last reload \(state.lastOutcome.result))")
    }

    private func announce(_ publication: Publication, trigger: String) {
        distribute(publication)
        let split = publication.snapshot.versions.map { "\($0.name)=\($0.trafficPercentText)%" }.joined(separator: " ")
        logger.info("reloaded (\(trigger)): generation \(publication.snapshot.generation), \(split)")
    }

    /// Posts a publication to every worker and the current endpoints to the prober.
    private func distribute(_ publication: Publication) {
        for worker in workers { worker.mailbox.post(.publish(publication)) }
        updateProbes()
    }

    // MARK: - Health

    /// Probes every address of every version that has health checks.
    private func updateProbes() {
        var targets: [ProbeTarget] = []
        for (index, version) in state.versions.versions.enumerated() {
            guard let check = version.healthCheck else { continue }
            for address in state.targets[index] {
                targets.append(ProbeTarget(key: HealthBook.Key(version: version.name, address: address), check: check))
            }
        }
        prober.probe(targets)
    }

    /// Applies a probe result or a failed connect; logs a change of state and publishes the
    /// routing it leads to.
    private func recordHealth(_ result: ProbeResult, _ key: HealthBook.Key, probed: Bool) {
        let before = state.routingStates
        let (changed, publication) = state.recordHealth(
            result, version: key.version, address: key.address, at: probed ? ReloadState.timestamp() : nil)
        if let changed {
            let reason: String
            switch result {
            case .healthy: reason = "answered 200"
            case .draining: reason = "answered 503 This node is being drained."
            case .failed(let why): reason = why
            }
            let line = "health: version \"\(key.version)\" endpoint \(key.address) is \(changed.rawValue) (\(reason))"
            if changed == .healthy { logger.info("\(line)") } else { logger.warning("\(line)") }
        }
        guard let publication else { return }
        distribute(publication)
        let plan = publication.snapshot.plan
        let versions = publication.snapshot.versions
        for (index, version) in versions.enumerated() where before?[index] != plan.states[index] {
            logger.info("version \"\(version.name)\" is \(plan.states[index].rawValue)")
        }
        let split = versions.indices.map { "\(versions[$0].name)=\(Self.percentText(plan.effective[$0]))%" }.joined(separator: " ")
        logger.info("health changed the split: generation \(publication.snapshot.generation), effective weights \(split)")
        if plan.failOpen {
            logger.warning("no running version can take the traffic of the unhealthy ones: routing by the configured weights anyway (fail open)")
        }
    }

    static func percentText(_ basisPoints: Int) -> String {
        VersionsConfig.Version(name: "", trafficBasisPoints: basisPoints, endpoints: []).trafficPercentText
    }

    // MARK: - Admin API

    private func acceptAdmin() {
        while let accepted = try? Syscall.accept(adminFD) {
            let connection = AdminConnection(fd: accepted.fd, acceptedAt: Clock.nowMs())
            do {
                try add(accepted.fd, .admin(connection))
            } catch {
                Syscall.close(accepted.fd)
            }
        }
    }

    /// Closes admin connections that did not send a complete request in time, so an idle or
    /// slow client cannot hold descriptors.
    private func closeStalledAdminConnections() {
        let now = Clock.nowMs()
        for (token, source) in sources {
            if case .admin(let connection) = source, now - connection.acceptedAt > Self.adminRequestMs {
                closeAdmin(connection, token: token)
            }
        }
    }

    private func closeAdmin(_ connection: AdminConnection, token: UInt64) {
        sources[token] = nil
        selector.deregister(connection.fd)
        Syscall.close(connection.fd)
    }

    private func serveAdmin(_ connection: AdminConnection, token: UInt64) {
        switch connection.readRequest() {
        case .needMore:
            return
        case .closed:
            break
        case .request(let method, let path):
            let (status, body, type) = adminResponse(method: method, path: path)
            connection.respond(status: status, body: body, contentType: type)
        case .invalid(let status):
            connection.respond(
                status: status, body: "{\"error\":{\"code\":\"bad_request\",\"message\":\"malformed request\"}}\n",
                contentType: "application/json")
        }
        closeAdmin(connection, token: token)
    }

    private func adminResponse(method: String, path: String) -> (Int, String, String) {
        let json = "application/json"
        guard method == "GET" || method == "HEAD" else {
            return (405, "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"the admin API answers GET\"}}\n", json)
        }
        switch path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path {
        case "/healthz":
            return draining ? (503, "{\"status\":\"draining\"}\n", json) : (200, "{\"status\":\"ok\"}\n", json)
        case "/status":
            return (200, statusJSON(), json)
        case "/metrics":
            return (200, metricsText(), MetricsText.contentType)
        default:
            return (404, "{\"error\":{\"code\":\"not_found\",\"message\":\"admin endpoints: GET /healthz, GET /status, GET /metrics\"}}\n", json)
        }
    }

    /// Every worker's published version stats, summed by version name, in order of first sight.
    private func summedVersionStats() -> [NamedVersionStats] {
        var byName: [String: Int] = [:]
        var summed: [NamedVersionStats] = []
        for worker in workers {
            for entry in worker.publishedVersionStats.load() {
                if let index = byName[entry.name] {
                    summed[index].stats.add(entry.stats)
                } else {
                    byName[entry.name] = summed.count
                    summed.append(entry)
                }
            }
        }
        return summed
    }

    func metricsText() -> String {
        var counters = ExchangeCounters()
        var failures: [EndpointFailures] = []
        var failureIndex: [String: Int] = [:]  // "version endpoint" → index in `failures`
        for worker in workers {
            for entry in worker.publishedConnectFailures.load() {
                let key = "\(entry.version) \(entry.endpoint)"
                if let index = failureIndex[key] {
                    failures[index].failures += entry.failures
                } else {
                    failureIndex[key] = failures.count
                    failures.append(entry)
                }
            }
            counters.add(worker.publishedCounters.load())
        }
        return MetricsText.render(.init(
            versions: summedVersionStats(), counters: counters, configured: state.versions.versions,
            plan: state.publishedRouting?.plan, endpoints: endpointHealth(),
            clientConnections: workers.reduce(0) { $0 + $1.publishedConnections.load(ordering: .relaxed) },
            accessLog: accessLog.map { writer in
                let dropped = workers.reduce(writer.linesLost.load(ordering: .relaxed)) {
                    $0 + ($1.accessLog?.publishedDropped.load(ordering: .relaxed) ?? 0)
                }
                return (writer.linesWritten.load(ordering: .relaxed), dropped)
            },
            generation: state.generation,
            failedReloads: state.failedReloads, reloads: state.reloadCounts, connectFailures: failures))
    }

    /// The health of every checked address, per version, in file order.
    private func endpointHealth() -> [(version: String, address: SocketAddress, health: EndpointHealth)] {
        var list: [(version: String, address: SocketAddress, health: EndpointHealth)] = []
        for (index, version) in state.versions.versions.enumerated() {
            let addresses = state.targets[index]
            guard let health = state.health.health(of: version, addresses: addresses) else { continue }
            for (address, endpoint) in zip(addresses, health) { list.append((version.name, address, endpoint)) }
        }
        return list
    }

    func statusJSON() -> String {
        let outcome = state.lastOutcome
        let plan = state.publishedRouting?.plan ?? TrafficPlan(configured: state.versions)
        let inFlight = Dictionary(summedVersionStats().map { ($0.name, Int64($0.stats.started) - Int64($0.stats.finished)) }) { $1 }
        let versions = state.versions.versions.enumerated().map { index, version in
            versionJSON(version, index: index, plan: plan, inFlight: inFlight[version.name] ?? 0)
        }
        let applied = workers.map { String($0.appliedGeneration.load(ordering: .relaxed)) }
        let appliedAt = workers.map { String($0.appliedAtNs.load(ordering: .relaxed)) }
        let errors = outcome.errors.map(JSONText.quote).joined(separator: ",")
        var counters = ExchangeCounters()
        for worker in workers { counters.add(worker.publishedCounters.load()) }
        return """
            {"service":\(JSONText.quote(state.versions.service)),"state":"\(Self.serviceState(plan).rawValue)","fail_open":\(plan.failOpen),\
            "generation":\(state.generation),\
            "workers":{"count":\(workers.count),"applied_generation":[\(applied.joined(separator: ","))],\
            "applied_at_monotonic_ns":[\(appliedAt.joined(separator: ","))]},\
            "draining":\(draining),\
            "unresolved_endpoints":[\(state.unresolved.map(JSONText.quote).joined(separator: ","))],\
            "connections_refused_over_limit":\(counters.refusedConnections),\
            "exchanges":\(exchangesJSON(counters)),\
            "auth":{"enabled":\(state.tokens != nil),"tokens":\(state.tokens?.count ?? 0)},\
            "last_reload":{"time":"\(outcome.time)","trigger":\(JSONText.quote(outcome.trigger)),"outcome":"\(outcome.result)","errors":[\(errors)]},\
            "failed_reloads":\(state.failedReloads),\
            "versions":[\(versions.joined(separator: ","))]}

            """
    }

    /// RUNNING when every version runs, UNHEALTHY when some version is, STARTING otherwise.
    static func serviceState(_ plan: TrafficPlan) -> TrafficPlan.VersionState {
        if plan.states.contains(.unhealthy) { return .unhealthy }
        return plan.states.allSatisfy { $0 == .running } ? .running : .starting
    }

    private func versionJSON(_ version: VersionsConfig.Version, index: Int, plan: TrafficPlan, inFlight: Int64) -> String {
        let addresses = state.targets[index]
        let health = state.health.health(of: version, addresses: addresses)
        let endpoints = addresses.enumerated().map { position, address in
            let endpoint = health?[position]
            return "{\"address\":\(JSONText.quote(address.description)),\"state\":\"\(endpoint?.state.rawValue ?? "NOT_CHECKED")\","
                + "\"last_check\":\(endpoint?.lastCheck.map(JSONText.quote) ?? "null"),"
                + "\"last_failure\":\(endpoint?.lastFailure.map(JSONText.quote) ?? "null")}"
        }
        let check = version.healthCheck.map { check in
            "{\"path\":\(JSONText.quote(check.path)),\"interval_ms\":\(check.intervalMs),\"timeout_ms\":\(check.timeoutMs),"
                + "\"healthy_threshold\":\(check.healthyThreshold),\"unhealthy_threshold\":\(check.unhealthyThreshold)}"
        } ?? "false"
        return "{\"name\":\(JSONText.quote(version.name)),\"state\":\"\(plan.states[index].rawValue)\","
            + "\"traffic_percent\":\(version.trafficPercentText),\"effective_traffic_percent\":\(Self.percentText(plan.effective[index])),"
            + "\"created_at\":\(state.createdAt[version.name].map(JSONText.quote) ?? "null"),\"in_flight\":\(max(inFlight, 0)),"
            + "\"on_unhealthy\":\(JSONText.quote(version.onUnhealthy.description)),\"retry_other_version\":\(version.retryOtherVersion),"
            + "\"health_check\":\(check),"
            + "\"endpoints\":[\(version.endpoints.map { JSONText.quote($0.description) }.joined(separator: ","))],"
            + "\"addresses\":[\(endpoints.joined(separator: ","))]}"
    }
}

/// Finished exchanges by outcome, summed over the workers (as of their last tick): the
/// proxy's own answers and cut-off responses by `ProxyError` label, zero counts left out.
func exchangesJSON(_ counters: ExchangeCounters) -> String {
    func byLabel(_ counts: InlineArray<16, UInt64>) -> String {
        let fields = ProxyError.allCases.compactMap { error in
            counts[error.rawValue] == 0 ? nil : "\"\(error.label)\":\(counts[error.rawValue])"
        }
        return "{\(fields.joined(separator: ","))}"
    }
    return """
        {"finished":\(counters.finished),"completed":\(counters.completed),"tunnelled":\(counters.tunnelled),\
        "client_gone":\(counters.clientGone),"rejected":\(byLabel(counters.rejected)),"truncated":\(byLabel(counters.truncated)),\
        "retries":\(counters.retries),"bytes_to_clients":\(counters.bytesToClients),"bytes_to_backends":\(counters.bytesToBackends)}
        """
}

/// One admin API request on its own short-lived connection.
final class AdminConnection {
    enum ReadResult {
        case needMore
        case closed
        case request(method: String, path: String)
        case invalid(status: Int)
    }

    let fd: Int32
    let acceptedAt: UInt64
    private let input = ByteBuffer(capacity: 4096)
    private var parser = HeadParser(limits: HeadLimits(maxHeadBytes: 16384, maxHeaders: 64, maxURIBytes: 2048))
    private var head = RequestHead()

    init(fd: Int32, acceptedAt: UInt64) {
        self.fd = fd
        self.acceptedAt = acceptedAt
    }

    func readRequest() -> ReadResult {
        input.reserveWritable(4096)
        switch try? input.read(from: fd) {
        case .processed(0)?, nil: return .closed
        case .wouldBlock?: return .needMore
        case .processed?: break
        }
        switch parser.parseRequest(input.readableBytes, into: &head) {
        case .needMore: return .needMore
        case .error(let error): return .invalid(status: error.status)
        case .complete:
            let bytes = input.readableBytes
            return .request(
                method: String(decoding: head.method.bytes(in: bytes), as: UTF8.self),
                path: String(decoding: head.target.bytes(in: bytes), as: UTF8.self))
        }
    }

    /// Writes a small JSON response and lets the caller close. Admin responses fit easily in
    /// a socket buffer, so one non-blocking write suffices.
    /// Writes the whole answer at once: the send buffer is made large enough first, so a big
    /// `/metrics` page is not cut off by a non-blocking write.
    func respond(status: Int, body: String, contentType: String) {
        let out = ByteBuffer(capacity: 1024)
        out.append("HTTP/1.1 \(status) \(status == 200 ? "OK" : ErrorRenderer.reason(status))\r\n"
            + "Content-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n")
        Socket.setSendBuffer(fd, bytes: out.readableCount + body.utf8.count + 4096)
        if head.methodKind != .head { out.append(body) }
        _ = try? out.flush(to: fd)
    }
}
