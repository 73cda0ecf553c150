/// Passive ejection of one endpoint, as one worker sees it: a failed connect (refused, timed
/// out) takes the endpoint out of the picks for a backoff that starts at 1 s and doubles up to
/// 30 s while failures go on; a successful connect puts it back at once.
///
///     in ──connect fails──▶ out for 1 s ──expires──▶ tried again ──fails──▶ out for 2 s … 30 s
///      ▲                                               │
///      └──────────────────connects─────────────────────┘
///
/// Pure state with an injected clock (milliseconds); the worker records outcomes and asks
/// `isEjected` when it picks an endpoint.
struct Ejection {
    static let firstBackoffMs: UInt64 = 1000
    static let maxBackoffMs: UInt64 = 30_000

    /// Failed connects since the last success.
    private(set) var failures = 0
    /// Out of the picks until this time; 0 when in.
    private(set) var until: UInt64 = 0

    @inline(__always)
    func isEjected(at now: UInt64) -> Bool { now < until }

    /// Records a failed connect; returns the backoff it starts.
    mutating func connectFailed(at now: UInt64) -> UInt64 {
        failures += 1
        let backoff = min(Self.maxBackoffMs, Self.firstBackoffMs << UInt64(min(failures - 1, 15)))
        until = now + backoff
        return backoff
    }

    mutating func connected() {
        failures = 0
        until = 0
    }
}
