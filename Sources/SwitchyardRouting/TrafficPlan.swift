/// How unpinned traffic is split once version health is known: the configured weights, with
/// each unhealthy version's share handled by its `on_unhealthy` policy.
///
/// Built on the control thread whenever a version's state changes (never per request); the
/// sampler table is built from `weights` once per snapshot.
public struct TrafficPlan: Sendable, Equatable {
    /// A version's state, in Anyscale's words.
    public enum VersionState: String, Sendable, Equatable {
        /// No verdict yet: its endpoints have not answered a probe. It takes traffic.
        case starting = "STARTING"
        /// At least one endpoint is healthy (or its health is not checked).
        case running = "RUNNING"
        /// No endpoint can take a request: all failed their checks or are draining.
        case unhealthy = "UNHEALTHY"
    }

    public let states: [VersionState]
    /// The sampler's weights in hundredths of a percent (sum 10,000). A version with the
    /// `fail` policy keeps its share here: requests sampled to it are answered 503.
    public let weights: [Int]
    /// The share of traffic each version serves: `weights` without the shares answered 503.
    public let effective: [Int]
    /// Bit `i` set: requests routed to version `i` (sampled or pinned) get 503 `version_unavailable`.
    public let unavailable: UInt16
    /// Some share stays on an unhealthy version because no running version with traffic can
    /// take it (every version is unhealthy, say): routed anyway rather than refused.
    public let failOpen: Bool

    /// The plan when every version runs: the configured weights.
    public init(configured config: VersionsConfig) {
        self.init(config: config, states: config.versions.map { _ in .running })
    }

    public init(config: VersionsConfig, states: [VersionState]) {
        precondition(states.count == config.versions.count && states.count <= 16)
        let versions = config.versions
        let configured = versions.map(\.trafficBasisPoints)
        self.states = states
        if !states.contains(where: { $0 != .unhealthy }) {
            // Every version is down: refusing everything helps nobody; route as configured.
            weights = configured
            effective = configured
            unavailable = 0
            failOpen = states.contains(.unhealthy)
            return
        }
        func takes(_ index: Int) -> Bool { states[index] != .unhealthy && configured[index] > 0 }
        var weights = configured
        var unavailable: UInt16 = 0
        var failing: UInt16 = 0
        var orphaned: [Int] = []  // unhealthy versions whose share is redistributed
        for index in versions.indices where states[index] == .unhealthy {
            unavailable |= 1 << index
            guard configured[index] > 0 else { continue }
            switch versions[index].onUnhealthy {
            case .fail:
                failing |= 1 << index
            case .fallback(let name):
                if let target = versions.firstIndex(where: { $0.name == name }), states[target] != .unhealthy {
                    weights[target] += weights[index]
                    weights[index] = 0
                } else {
                    orphaned.append(index)
                }
            case .redistribute:
                orphaned.append(index)
            }
        }
        var failOpen = false
        let recipients = versions.indices.filter(takes)
        if recipients.isEmpty {
            // Nobody healthy to take the orphaned shares: they stay where they are, and those
            // versions are routed to (fail open) instead of being refused.
            for index in orphaned { unavailable &= ~(1 << index) }
            failOpen = !orphaned.isEmpty
        } else {
            let pool = orphaned.reduce(0) { $0 + weights[$1] }
            for index in orphaned { weights[index] = 0 }
            let shares = Self.apportion(pool, among: recipients.map { configured[$0] })
            for (slot, index) in recipients.enumerated() { weights[index] += shares[slot] }
        }
        self.weights = weights
        self.effective = weights.indices.map { failing & (1 << $0) != 0 ? 0 : weights[$0] }
        self.unavailable = unavailable
        self.failOpen = failOpen
    }

    /// Splits `total` in proportion to `weights` exactly (largest remainder; ties go to the
    /// earlier entry), so the result sums to `total`.
    static func apportion(_ total: Int, among weights: [Int]) -> [Int] {
        let sum = weights.reduce(0, +)
        guard sum > 0 else { return weights.map { _ in 0 } }
        var shares = weights.map { total * $0 / sum }
        let remainders = weights.indices.sorted { left, right in
            let a = total * weights[left] % sum, b = total * weights[right] % sum
            return a != b ? a > b : left < right
        }
        var left = total - shares.reduce(0, +)
        for index in remainders where left > 0 {
            shares[index] += 1
            left -= 1
        }
        return shares
    }

    @inline(__always)
    public func isUnavailable(_ version: Int) -> Bool { unavailable & (1 << UInt16(version)) != 0 }
}
