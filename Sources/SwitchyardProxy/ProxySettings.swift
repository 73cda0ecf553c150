import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardRouting

/// The parts of the server config a worker uses on the request path, in ready-to-use form.
struct ProxySettings: Sendable {
    let timeouts: ServerConfig.Timeouts
    /// The client-connection timeouts in the form `H1ServerMachine` takes.
    let serverTimeouts: H1ServerMachine.Timeouts
    let tlsHandshakeMs: UInt64
    let headLimits: HeadLimits
    let maxConnectionsPerWorker: Int
    let forwardAuthorization: Bool
    /// Endpoints one request may try (`limits.max_connect_attempts`).
    let maxConnectAttempts: Int
    /// Client and backend sockets this worker may hold (`Worker+Descriptors`).
    let descriptorBudget: Int
    /// How long an idle backend connection is kept. Below the 5 s keep-alive timeout of
    /// uvicorn (Ray Serve's HTTP server), so the backend rarely closes one under our feet.
    let upstreamIdleMs: Int
    /// HTTP/2 from clients; nil when `http2.enabled` is false.
    let http2: H2Limits?

    /// `maxConnections`: the configured limit, or the one derived from the descriptor limit;
    /// `descriptors`: what the descriptor limit leaves for client and backend sockets.
    init(config: ServerConfig, workers: Int, maxConnections: Int, descriptors: Int) {
        timeouts = config.timeouts
        serverTimeouts = .init(idleMs: UInt64(config.timeouts.idleMs), requestHeadMs: UInt64(config.timeouts.requestHeadMs))
        tlsHandshakeMs = UInt64(config.timeouts.tlsHandshakeMs)
        headLimits = HeadLimits(
            maxHeadBytes: config.limits.maxHeadBytes, maxHeaders: config.limits.maxHeaders,
            maxURIBytes: config.limits.maxURIBytes)
        maxConnectionsPerWorker = max(1, maxConnections / max(1, workers))
        forwardAuthorization = config.auth.forwardAuthorization
        maxConnectAttempts = config.limits.maxConnectAttempts
        descriptorBudget = max(2, descriptors / max(1, workers))
        upstreamIdleMs = min(config.timeouts.upstreamIdleMs, config.timeouts.idleMs)
        http2 = config.http2.enabled ? H2Limits(config.http2) : nil
    }
}

extension H2Limits {
    init(_ config: ServerConfig.HTTP2) {
        self.init()
        maxConcurrentStreams = UInt32(config.maxConcurrentStreams)
        maxHeaderListBytes = config.maxHeaderListBytes
        streamWindowBytes = UInt32(config.streamWindowBytes)
        resetBurst = UInt64(config.resetBurst)
        resetsPerSecond = UInt64(config.resetsPerSecond)
        overheadFrameBurst = UInt64(config.overheadFrameBurst)
        overheadFramesPerSecond = UInt64(config.overheadFramesPerSecond)
        maxContinuations = config.maxContinuations
        headerTableBytes = UInt32(config.headerTableBytes)
    }
}
