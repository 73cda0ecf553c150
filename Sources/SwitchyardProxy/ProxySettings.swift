import SwitchyardHTTP
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
    /// How long an idle backend connection is kept. Below the 5 s keep-alive timeout of
    /// uvicorn (Ray Serve's HTTP server), so the backend rarely closes one under our feet.
    let upstreamIdleMs: Int

    /// `maxConnections`: the configured limit, or the one derived from the descriptor limit.
    init(config: ServerConfig, workers: Int, maxConnections: Int) {
        timeouts = config.timeouts
        serverTimeouts = .init(idleMs: UInt64(config.timeouts.idleMs), requestHeadMs: UInt64(config.timeouts.requestHeadMs))
        tlsHandshakeMs = UInt64(config.timeouts.tlsHandshakeMs)
        headLimits = HeadLimits(
            maxHeadBytes: config.limits.maxHeadBytes, maxHeaders: config.limits.maxHeaders,
            maxURIBytes: config.limits.maxURIBytes)
        maxConnectionsPerWorker = max(1, maxConnections / max(1, workers))
        forwardAuthorization = config.auth.forwardAuthorization
        upstreamIdleMs = min(config.timeouts.upstreamIdleMs, config.timeouts.idleMs)
    }
}
