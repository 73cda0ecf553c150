/// Milliseconds that move only when a test says so, for the deadlines machines compute from
/// the time they are given.
public struct ManualClock {
    public private(set) var now: UInt64

    public init(now: UInt64 = 1_000_000) {
        self.now = now
    }

    public mutating func advance(by milliseconds: UInt64) {
        now += milliseconds
    }
}
