/// Lets a recurring report through at most once a second, so a flood of the same failure
/// (accept out of descriptors, connections over the limit, streams waiting for a socket) tells
/// the control thread once a second instead of once per event.
struct ReportThrottle {
    static let intervalMs: UInt64 = 1000

    /// When the last report went through (ms); nil before the first.
    private var lastMs: UInt64?

    /// Whether a report may go now; if so, the next one waits a second.
    mutating func mayReport(now: UInt64) -> Bool {
        if let lastMs, now < lastMs + Self.intervalMs { return false }
        lastMs = now
        return true
    }
}
