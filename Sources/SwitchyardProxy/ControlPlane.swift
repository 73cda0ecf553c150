import CLinuxShims
import Glibc
import Logging
import Synchronization
import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// What workers tell the control thread.
enum ControlMessage: Sendable {
    case workerFinished(Int)
    /// A worker could not accept connections (out of descriptors or memory) and paused its
    /// listener briefly; sent at most once a second per worker.
    case acceptFailed(worker: Int, error: String)
    /// A worker refused connections (503) at its share of `limits.max_connections`; sent at
    /// most once a second per worker.
    case connectionLimitReached(worker: Int, limit: Int)
    /// A worker is at its descriptor budget (requests wait for a backend socket, or got 503),
    /// or a backend connect failed for lack of descriptors; sent at most once a second.
    case descriptorsExhausted(worker: Int, budget: Int, detail: String)
    /// The resolver thread's answer to the request with this ticket.
    case resolved(ticket: UInt64, result: Result<ConfigLoader.Resolution, LoadError>)
    /// A worker could not connect to an endpoint and skips it for `backoffMs`.
    case endpointEjected(worker: Int, address: SocketAddress, grpc: Bool, failures: Int, backoffMs: UInt64)
    /// The health prober's answer about one endpoint.
    case probed(HealthBook.Key, ProbeResult)
}

/// The control thread: signals, file watching and reloads, the admin API, shutdown.
/// Runs its own epoll loop; never on the request path.
final class ControlPlane {
    enum Source {
        case signals
        case watcher
        case mailbox
        case drainTimer
        case sweepTimer
        case settleTimer
        case resolveTimer(Int32)
        case adminListener
        case admin(AdminConnection)
        /// The pipe a new process (an upgrade) says "ready" on.
        case upgradePipe
    }

    let loader: ConfigLoader
    let logger: Logger
    var state: ReloadState
    let workers: [WorkerHandle]
    let mailbox: Mailbox<ControlMessage>
    let selector: Selector
    private let signalFD: Int32
    private let watcher: FileWatcher
    let adminFD: Int32
    private var drainTimerFD: Int32 = -1
    private let sweepTimerFD: Int32
    /// Fires once, `settleMs` after a reload found an invalid file, to read it again.
    private let settleTimerFD: Int32
    private var settlingTrigger: String?
    private static let settleMs = 100
    private let resolver: Resolver
    private let prober: HealthProber
    let accessLog: AccessLogWriter?
    /// The TLS listeners' certificates, reloaded with the hot files.
    var certificates: CertificateReloader
    /// The newest request to the resolver; older answers are dropped.
    private var resolveTicket: UInt64 = 0
    /// The versions config that request was about.
    private var resolvingVersions: VersionsConfig?
    /// An admin request must arrive complete within this time.
    static let adminRequestMs: UInt64 = 5000
    /// Every listening socket, for a new process to take over on an upgrade.
    let listenerFDs: [Int32]
    /// The upgrade under way, and how the last one ended (for `/status`).
    var upgrade: UpgradeAttempt?
    var upgradeOutcome: UpgradeOutcome?
    var sources: [UInt64: Source] = [:]
    private var nextToken: UInt64 = 1
    private var finishedWorkers = 0
    var draining = false

    init(loader: ConfigLoader, state: ReloadState, workers: [WorkerHandle], mailbox: Mailbox<ControlMessage>,
         adminFD: Int32, listenerFDs: [Int32], accessLog: AccessLogWriter?, certificates: CertificateReloader,
         logger: Logger) throws(SystemError) {
        self.listenerFDs = listenerFDs
        self.accessLog = accessLog
        self.certificates = certificates
        self.loader = loader
        self.state = state
        self.workers = workers
        self.mailbox = mailbox
        self.adminFD = adminFD
        self.logger = logger
        self.selector = try Selector()
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2] { sigaddset(&mask, signal) }
        self.signalFD = Int32(try Syscall.call("signalfd") {
            Int(signalfd(-1, &mask, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)))
        })
        self.watcher = try FileWatcher(paths: [loader.versionsPath] + (loader.tokensPath.map { [$0] } ?? [])
            + CertificateReloader.paths(loader.server, loader: loader))
        self.sweepTimerFD = try Syscall.timerfd()
        self.settleTimerFD = try Syscall.timerfd()
        self.resolver = try Resolver(loader: loader, answers: mailbox)
        self.prober = try HealthProber(answers: mailbox)
        try add(signalFD, .signals)
        try add(watcher.fd, .watcher)
        try watcher.add(paths: state.upstreamFiles.paths)
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

    /// Watches `fd` for input; returns the token its events come with.
    @discardableResult
    func add(_ fd: Int32, _ source: Source) throws(SystemError) -> UInt64 {
        let token = nextToken
        nextToken += 1
        sources[token] = source
        do {
            try selector.registerInput(fd, token: token)
        } catch {
            sources[token] = nil
            throw error
        }
        return token
    }

    /// Stops watching `fd` (the caller closes it).
    func remove(_ fd: Int32, token: UInt64) {
        sources[token] = nil
        selector.deregister(fd)
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
                        case .endpointEjected(let worker, let address, let grpc, let failures, let backoffMs):
                            logger.warning("""
                                worker \(worker): cannot connect to \(address) (\(failures) failed connect\(failures == 1 ? "" : "s") \
                                in a row); it gets no requests for \(backoffMs) ms unless no other endpoint of its version is left
                                """)
                            for version in state.versions.versions {
                                recordHealth(.failed("worker \(worker) could not connect"), .init(version: version.name, address: address, grpc: grpc),
                                             probed: false)
                            }
                        case .probed(let key, let result):
                            recordHealth(result, key, probed: true)
                        case .descriptorsExhausted(let worker, let budget, let detail):
                            logger.warning("""
                                worker \(worker) is at its budget of \(budget) descriptors for client and backend sockets: \(detail). \
                                Raise the descriptor limit (ulimit -n, LimitNOFILE) or lower limits.max_connections
                                """)
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
                    checkUpgradeTimeout()
                    if certificates.hasListeners, TicketKeys.shared.rotateIfDue(nowMs: Clock.nowMs()) {
                        logger.info("rotated the TLS session ticket key (the previous one still resumes sessions)")
                    }
                case .adminListener: acceptAdmin()
                case .admin(let connection): serveAdmin(connection, token: token)
                case .upgradePipe: upgradeAnswered(token: token)
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
                ServiceManager.reloading(logger)
                reportStaticChanges()
                reload(trigger: "SIGHUP", tentative: false)
                requestResolution()
                ServiceManager.ready(logger)
            case SIGUSR1:
                if let accessLog { accessLog.reopen() } else { logger.info("SIGUSR1: no access log to reopen") }
            case SIGUSR2:
                startUpgrade()
            default: startDrain(signal: Int32(info.ssi_signo))
            }
        }
    }

    func startDrain(signal: Int32) {
        guard !draining else { return }
        draining = true
        ServiceManager.stopping(logger)
        let drainMs = loader.server.timeouts.drainMs
        logger.info("signal \(signal): no longer accepting; draining in-flight requests for up to \(drainMs) ms")
        for worker in workers { worker.mailbox.post(.drain) }
        if let timer = try? Syscall.timerfd(), (try? Syscall.armPeriodic(timer, intervalMs: max(drainMs, 1))) != nil {
            drainTimerFD = timer
            _ = try? add(timer, .drainTimer)
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
        reloadCertificates(trigger: trigger)
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

    /// Certificates whose files changed go to the workers; invalid ones are reported and the
    /// previous ones stay.
    private func reloadCertificates(trigger: String) {
        let (changed, errors) = certificates.reload()
        for error in errors { logger.error("reload (\(trigger)) rejected: \(error)") }
        for (listener, context) in changed {
            for worker in workers { worker.mailbox.post(.certificates(listener: listener, context)) }
            for certificate in context.loaded {
                logger.info("reloaded (\(trigger)): TLS certificate \(certificate.certFile) (\(certificate.subject)), expires in \(certificate.secondsLeft / 86400) days")
            }
        }
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
        for name in UpstreamFiles.unverified(state.versions) {
            logger.warning("version \"\(name)\": tls.insecure_skip_verify is set: its backends' certificates are not checked")
        }
    }

    /// Posts a publication to every worker and the current endpoints to the prober.
    private func distribute(_ publication: Publication) {
        for worker in workers { worker.mailbox.post(.publish(publication)) }
        updateProbes()
        watchUpstreamFiles()
    }

    /// The CA bundles and upstream tokens the versions name are watched like the hot files.
    private func watchUpstreamFiles() {
        do {
            try watcher.add(paths: state.upstreamFiles.paths)
        } catch {
            logger.warning("cannot watch the upstream TLS and token files (\(error)); SIGHUP reloads them")
        }
    }

    // MARK: - Health

    /// Probes every address of every version that has health checks.
    private func updateProbes() {
        var targets: [ProbeTarget] = []
        let upstreams = state.upstreamFiles.upstreams(state.versions, serverNames: state.serverNames)
        for (index, version) in state.versions.versions.enumerated() {
            guard let check = version.healthCheck else { continue }
            let upstream = upstreams[index]
            for (target, address) in state.targets[index].enumerated() {
                targets.append(ProbeTarget(
                    key: HealthBook.Key(version: version.name, address: address), check: check,
                    tls: upstream.tls, serverName: upstream.serverNames[target]))
            }
            for address in state.grpcTargets[index] {
                targets.append(ProbeTarget(key: HealthBook.Key(version: version.name, address: address, grpc: true), check: check))
            }
        }
        prober.probe(targets)
    }

    /// Applies a probe result or a failed connect; logs a change of state and publishes the
    /// routing it leads to.
    private func recordHealth(_ result: ProbeResult, _ key: HealthBook.Key, probed: Bool) {
        let before = state.routingStates
        let (changed, publication) = state.recordHealth(result, for: key, at: probed ? ReloadState.timestamp() : nil)
        if let changed {
            let reason: String
            switch result {
            case .healthy: reason = key.grpc ? "answered grpc-status 0" : "answered 200"
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
        logger.info("routing follows health: generation \(publication.snapshot.generation), effective weights \(split)")
        if plan.failOpen {
            logger.warning("no running version can take the traffic of the unhealthy ones: routing by the configured weights anyway (fail open)")
        }
    }

    static func percentText(_ basisPoints: Int) -> String {
        VersionsConfig.Version(name: "", trafficBasisPoints: basisPoints, endpoints: []).trafficPercentText
    }
}
