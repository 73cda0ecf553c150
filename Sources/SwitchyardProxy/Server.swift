import CLinuxShims
import Glibc
import Logging
import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// Starts Switchyard: loads the files, binds the listeners, starts the workers and runs the
/// control loop on the calling thread until a SIGTERM/SIGINT drain completes.
public enum Server {
    public static func run(loader: ConfigLoader, logger: Logger) throws(LoadError) {
        let handover = Handover()
        _ = ControlPlane.executablePath
        let config = loader.server
        var state = try ReloadState(loader: loader)
        for endpoint in state.unresolved {
            logger.warning("\(loader.versionsPath): \(endpoint); left out until the file is reloaded")
        }
        let workerCount = config.workers > 0 ? config.workers : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

        // Signals go to the control thread's signalfd: block them before any thread starts,
        // so every worker inherits the mask. SIGPIPE is ignored: a vanished peer is an error
        // return, not a process kill.
        signal(SIGPIPE, SIG_IGN)
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2] { sigaddset(&blocked, number) }
        pthread_sigmask(SIG_BLOCK, &blocked, nil)

        let accessLog = try config.accessLog.map { settings throws(LoadError) in
            try AccessLogWriter(settings: settings, path: settings.path == "-" ? "-" : loader.path(settings.path),
                                workers: workerCount, logger: logger)
        }
        let listenerTLS = try tlsContexts(config.listeners, loader: loader)
        let (maxConnections, descriptors) = connectionLimit(config: config, logger: logger)
        let listenerFDs = try bindListeners(config.listeners, workers: workerCount, handover: handover)
        for (sockets, tls) in zip(listenerFDs, listenerTLS) {
            let bound = Socket.localAddress(sockets[0])?.description ?? "?"
            for certificate in tls?.loaded ?? [] {
                logger.info("TLS on \(bound): \(certificate.certFile) (\(certificate.subject)), expires in \(certificate.secondsLeft / 86400) days")
            }
        }
        let adminAddress = try resolveOne(config.admin, what: "admin.address")
        let adminFD: Int32
        if let inherited = handover.take(adminAddress, count: 1).first {
            adminFD = inherited
        } else {
            do {
                adminFD = try Socket.listen(on: adminAddress, reusePort: false, backlog: 64)
            } catch {
                throw LoadError("cannot listen on admin.address \(config.admin): \(error)")
            }
        }

        let controlMailbox: Mailbox<ControlMessage>
        let workers: [Worker]
        let control: ControlPlane
        do {
            controlMailbox = try Mailbox()
            let publication = state.publish()
            let settings = ProxySettings(config: config, workers: workerCount, maxConnections: maxConnections, descriptors: descriptors)
            workers = try (0..<workerCount).map { id throws(SystemError) in
                try Worker(id: id, settings: settings, listenerFDs: listenerFDs.map { $0[id] },
                           publication: publication, controlMailbox: controlMailbox, accessLog: accessLog,
                           listenerTLS: listenerTLS)
            }
            control = try ControlPlane(
                loader: loader, state: state, workers: workers.map(\.handle), mailbox: controlMailbox, adminFD: adminFD,
                listenerFDs: listenerFDs.flatMap { $0 },
                accessLog: accessLog, certificates: CertificateReloader(loader: loader, contexts: listenerTLS), logger: logger)
            try accessLog?.start()
        } catch {
            throw LoadError("cannot start: \(error)")
        }

        for worker in workers {
            do {
                try ThreadStarter.start(name: "worker-\(worker.id)") { worker.run() }
            } catch {
                throw LoadError("cannot start worker thread: \(error)")
            }
        }
        let clientAddresses = listenerFDs.compactMap { Socket.localAddress($0[0])?.description }
        let adminBound = Socket.localAddress(adminFD)?.description ?? config.admin.description
        let split = state.versions.versions.map { "\($0.name)=\($0.trafficPercentText)%" }.joined(separator: " ")
        logger.info("service \(state.versions.service): \(split); auth \(state.tokens == nil ? "disabled" : "on")")
        warnAboutExposure(loader: loader, tokens: state.tokens, versions: state.versions, admin: Socket.localAddress(adminFD) ?? adminAddress, logger: logger)
        // One line on stdout with the bound addresses (port 0 becomes a real port), for scripts.
        print("switchyard listening on \(clientAddresses.joined(separator: ", ")) with \(workerCount) workers; admin on \(adminBound)")
        fflush(nil)
        for address in handover.ready() {
            logger.warning("inherited listening socket \(address) is not in the config; closed")
        }
        ServiceManager.ready(logger)
        control.run()
    }

    /// The token shipped in config/tokens.txt for the demo.
    static let demoToken = "demo-token-change-me"

    /// Settings that are fine on a laptop and dangerous anywhere else, said once at start.
    private static func warnAboutExposure(loader: ConfigLoader, tokens: TokenSet?, versions: VersionsConfig, admin: SocketAddress, logger: Logger) {
        if let tokens, Array(demoToken.utf8).withUnsafeBytes({ tokens.contains($0) }) {
            logger.warning("""
                \(loader.server.auth.tokensFile ?? "the tokens file") contains the demo token "\(demoToken)": \
                anyone who read the README can use it. Replace it before exposing Switchyard
                """)
        }
        if tokens == nil {
            logger.warning("auth.disabled is set: every client reaches every version without a token")
        }
        for name in UpstreamFiles.unverified(versions) {
            logger.warning("version \"\(name)\": tls.insecure_skip_verify is set: its backends' certificates are not checked")
        }
        if !admin.isLoopback {
            logger.warning("""
                the admin API listens on \(admin), reachable from other hosts, without authentication; \
                bind admin.address to 127.0.0.1 unless a firewall protects it
                """)
        }
    }

    /// Raises the soft descriptor limit to the hard one and returns how many client
    /// connections to allow: `limits.max_connections`, or by default what the descriptors allow
    /// (each busy client connection needs a backend socket too), and the descriptors the
    /// workers share for client and backend sockets: the limit less `reservedDescriptors`.
    private static func connectionLimit(config: ServerConfig, logger: Logger) -> (connections: Int, descriptors: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (config.limits.maxConnections ?? 1024, 2048) }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let descriptors = min(max(Int(clamping: limit.rlim_cur), reservedDescriptors + 2) - reservedDescriptors, 20_000_000)
        let derived = descriptors / 2
        guard let configured = config.limits.maxConnections else { return (min(derived, 10_000_000), descriptors) }
        if configured > derived {
            logger.warning("""
                limits.max_connections is \(configured) but only \(limit.rlim_cur) file descriptors are allowed \
                (2 per busy connection, so about \(derived) connections); raise the limit (ulimit -n) or lower \
                max_connections, or leave it out to derive it from the limit
                """)
        }
        return (configured, descriptors)
    }

    /// Descriptors kept out of the workers' budget: listeners, epoll, event and timer
    /// descriptors, the control thread's files and admin connections, the health prober's
    /// sockets and the resolver's.
    static let reservedDescriptors = 64

    private static func resolveOne(_ endpoint: Endpoint, what: String) throws(LoadError) -> SocketAddress {
        do {
            return try SocketAddress.resolve(host: endpoint.host, port: endpoint.port)[0]
        } catch {
            throw LoadError("\(what) \(endpoint): \(error)")
        }
    }

    /// Each TLS listener's certificates, loaded and checked (paths relative to the config file).
    private static func tlsContexts(_ listeners: [ServerConfig.Listener], loader: ConfigLoader) throws(LoadError) -> [TLSServerContext?] {
        var contexts: [TLSServerContext?] = []
        for (index, listener) in listeners.enumerated() {
            guard let tls = listener.tls else {
                contexts.append(nil)
                continue
            }
            do {
                contexts.append(try TLSServerContext(
                    certificates: tls.certificates.map { .init(certFile: loader.path($0.certFile), keyFile: loader.path($0.keyFile)) },
                    minimumTLS13: tls.minimumTLS13, alpn: tls.alpn))
            } catch {
                throw LoadError("\(loader.configPath): listeners[\(index)].tls: \(error)")
            }
        }
        return contexts
    }

    /// One socket per listener per worker, all bound to the same address with SO_REUSEPORT.
    /// A port of 0 is bound once by the first worker; the others bind the port it got.
    /// Sockets handed over (an upgrade, socket activation) are used first.
    private static func bindListeners(_ listeners: [ServerConfig.Listener], workers: Int, handover: Handover) throws(LoadError) -> [[Int32]] {
        var result: [[Int32]] = []
        for listener in listeners {
            let endpoint = listener.address
            var address = try resolveOne(endpoint, what: "listener")
            var sockets = handover.take(address, count: workers)
            if let first = sockets.first, let bound = Socket.localAddress(first) { address = bound }
            if sockets.isEmpty, endpoint.port != 0, !listener.sharePort, Socket.isTaken(address) {
                throw LoadError("""
                    cannot listen on \(endpoint): another process already listens there (another Switchyard?). \
                    Stop it, choose another port, or set "share_port": true on this listener to share the port \
                    on purpose (for a zero-downtime restart)
                    """)
            }
            // Fewer sockets handed over than workers (socket activation passes one, without
            // SO_REUSEPORT): the workers share them, each through a descriptor of its own.
            let inherited = sockets
            while !inherited.isEmpty && sockets.count < workers {
                let copy = dup(inherited[sockets.count % inherited.count])
                guard copy >= 0 else { throw LoadError("cannot share the inherited listener \(endpoint): \(SystemError("dup", errno: errno))") }
                _ = fcntl(copy, F_SETFD, FD_CLOEXEC)
                sockets.append(copy)
            }
            while sockets.count < workers {
                do {
                    let fd = try Socket.listen(on: address, reusePort: true)
                    if sockets.isEmpty, let bound = Socket.localAddress(fd) { address = bound }
                    sockets.append(fd)
                } catch {
                    throw LoadError("cannot listen on \(endpoint): \(error)")
                }
            }
            result.append(sockets)
        }
        return result
    }
}
