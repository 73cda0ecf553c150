import CLinuxShims

/// Monotonic time for deadlines.
public enum Clock {
    /// Milliseconds on a coarse monotonic clock: a vDSO read, cheap enough to take once per
    /// event-loop iteration.
    @inline(__always)
    public static func nowMs() -> UInt64 { sy_monotonic_ms_coarse() }

    /// Nanoseconds on the precise monotonic clock (for measurements).
    @inline(__always)
    public static func nowNs() -> UInt64 { sy_monotonic_ns() }
}
