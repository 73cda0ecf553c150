import CLinuxShims
import Glibc

/// Monotonic time for deadlines.
public enum Clock {
    /// Milliseconds on a coarse monotonic clock: a vDSO read, cheap enough to take once per
    /// event-loop iteration.
    @inline(__always)
    public static func nowMs() -> UInt64 { sy_monotonic_ms_coarse() }

    /// Nanoseconds on the precise monotonic clock (for measurements).
    @inline(__always)
    public static func nowNs() -> UInt64 { sy_monotonic_ns() }

    /// Nanoseconds since the Unix epoch (wall clock, for timestamps in logs).
    @inline(__always)
    public static func wallNs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}
