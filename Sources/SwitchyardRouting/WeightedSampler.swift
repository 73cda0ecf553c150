/// Picks a version index in proportion to traffic weights, in O(1), without mutation.
///
/// Weights have 0.01 % resolution and sum to 10,000, so the sampler expands them into a
/// 10,000-entry table of version indices once per snapshot (Pingora's "build once, pick
/// many"). A pick is one multiply and one load. The table (10 KB) is exact — an alias table
/// would be smaller but needs two random draws or float math per pick — and fits in L2.
public struct WeightedSampler: Sendable {
    public static let resolution = 10_000
    private let table: [UInt8]

    /// `weights` in hundredths of a percent; they must sum to 10,000 and at most 255 entries.
    public init(weights: [Int]) {
        precondition(weights.reduce(0, +) == Self.resolution && weights.count < 256)
        var table: [UInt8] = []
        table.reserveCapacity(Self.resolution)
        // Interleave versions so neighbouring random values do not land in one long run; the
        // distribution is the same either way, but it keeps low-quality generators honest.
        var credits = weights.map { _ in 0 }
        for _ in 0..<Self.resolution {
            var best = 0
            for index in weights.indices {
                credits[index] += weights[index]
                if credits[index] > credits[best] { best = index }
            }
            credits[best] -= Self.resolution
            table.append(UInt8(best))
        }
        self.table = table
    }

    /// Maps 32 random bits onto the table with a multiply-shift (no modulo bias worth a bit).
    @inline(__always)
    public func pick(_ random: UInt64) -> Int {
        entry(at: slot(random))
    }

    @inline(__always)
    public func slot(_ random: UInt64) -> Int {
        Int(((random & 0xFFFF_FFFF) &* UInt64(Self.resolution)) >> 32)
    }

    @inline(__always)
    public func entry(at slot: Int) -> Int {
        table.withUnsafeBufferPointer { Int($0[slot]) }
    }
}

/// A small fast generator (wyrand), one per worker: no sharing, no atomics.
public struct FastRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0xA076_1D64_78BD_642F
        let product = state.multipliedFullWidth(by: state ^ 0xE703_7ED1_A0B4_28DB)
        return product.high ^ product.low
    }
}
