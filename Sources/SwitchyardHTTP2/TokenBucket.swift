/// A budget of events that refills over time: `burst` at most, `perSecond` regained. Pure: the
/// caller passes the time (seconds on a monotonic clock), so tests need no clock.
struct TokenBucket {
    let burst: Double
    let perSecond: Double
    private var tokens: Double
    private var countedAt: Double

    init(burst: UInt64, perSecond: UInt64, now: Double) {
        self.burst = Double(burst)
        self.perSecond = Double(perSecond)
        tokens = Double(burst)
        countedAt = now
    }

    /// Spends `count` tokens; false when fewer were left (the events are over budget).
    mutating func take(_ count: Int = 1, now: Double) -> Bool {
        tokens = min(burst, tokens + max(0, now - countedAt) * perSecond)
        countedAt = now
        guard tokens >= Double(count) else {
            tokens = 0
            return false
        }
        tokens -= Double(count)
        return true
    }
}
