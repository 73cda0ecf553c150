/// What one health probe found.
enum ProbeResult: Sendable, Equatable {
    /// 200.
    case healthy
    /// Ray Serve's 503 `This node is being drained.`: the node is going away.
    case draining
    /// Anything else: refused, timed out, another status, a broken answer; with the reason.
    case failed(String)
}

/// One endpoint's health as the checks (and the workers' failed connects) report it.
///
///     UNKNOWN ──1 ok──▶ HEALTHY ──unhealthy_threshold failures──▶ UNHEALTHY
///        │                 ▲  ▲                                      │
///        │ unhealthy_      │  └──────healthy_threshold oks───────────┘
///        │ threshold       │
///        │ failures        └──healthy_threshold oks── DRAINING ◀── "being drained" (any state)
///        ▼
///     UNHEALTHY
///
/// An endpoint starts UNKNOWN and takes traffic; the first good answer is a verdict (no
/// reason to wait out a threshold at start). Pure state: times are passed in.
struct EndpointHealth: Sendable, Equatable {
    enum State: String, Sendable, Equatable, CaseIterable {
        case unknown = "UNKNOWN"
        case healthy = "HEALTHY"
        case unhealthy = "UNHEALTHY"
        case draining = "DRAINING"
    }

    private(set) var state = State.unknown
    private(set) var successes = 0
    private(set) var failures = 0
    /// Wall-clock time of the last probe's answer (RFC 3339), for `/status`.
    private(set) var lastCheck: String?
    /// The last failure's reason, kept until the endpoint is healthy again.
    private(set) var lastFailure: String?

    /// Applies a probe's result (or, as `.failed`, a worker's failed connect); returns the new
    /// state when it changed.
    mutating func record(_ result: ProbeResult, thresholds check: HealthThresholds, at time: String?) -> State? {
        if let time { lastCheck = time }
        let before = state
        switch result {
        case .healthy:
            successes += 1
            failures = 0
            if state == .unknown || successes >= check.healthy {
                state = .healthy
                lastFailure = nil
            }
        case .draining:
            successes = 0
            failures = 0
            state = .draining
            lastFailure = "draining (This node is being drained.)"
        case .failed(let reason):
            failures += 1
            successes = 0
            lastFailure = reason
            // A draining node that stops answering is gone; otherwise count to the threshold.
            if failures >= check.unhealthy || state == .draining { state = .unhealthy }
        }
        return state == before ? nil : state
    }

    /// Whether new requests may go to it (UNHEALTHY ones only as a last resort).
    var takesRequests: Bool { state == .unknown || state == .healthy }
}

/// `healthy_threshold` and `unhealthy_threshold` of a `HealthCheck`.
struct HealthThresholds: Sendable, Equatable {
    var healthy: Int
    var unhealthy: Int
}
