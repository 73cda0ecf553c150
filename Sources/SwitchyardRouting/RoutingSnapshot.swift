/// Everything a worker needs to route a request, immutable once built.
///
/// The control thread builds one for every accepted change of the versions or tokens file and
/// posts it to every worker; a request keeps the snapshot it started with until it ends.
public final class RoutingSnapshot: Sendable {
    /// Increases by one with every published snapshot.
    public let generation: UInt64
    public let config: VersionsConfig
    /// nil when `auth.disabled` is set.
    public let tokens: TokenSet?
    /// The split once version health is applied; the sampler follows its weights.
    public let plan: TrafficPlan
    public let sampler: WeightedSampler
    private let names: [[UInt8]]

    public init(generation: UInt64, config: VersionsConfig, tokens: TokenSet?, plan: TrafficPlan? = nil) {
        let plan = plan ?? TrafficPlan(configured: config)
        precondition(plan.weights.count == config.versions.count)
        self.generation = generation
        self.config = config
        self.tokens = tokens
        self.plan = plan
        self.sampler = WeightedSampler(weights: plan.weights)
        self.names = config.versions.map { Array($0.name.utf8) }
    }

    public var versions: [VersionsConfig.Version] { config.versions }

    /// The same snapshot with its own sampler table, names and tokens. Each worker routes with
    /// such a copy: retaining or reading shared arrays would make workers bump reference
    /// counts on the same cache lines with every request.
    public func workerCopy() -> RoutingSnapshot {
        RoutingSnapshot(generation: generation, config: config, tokens: tokens?.deepCopy(), plan: plan)
    }

    /// The index of the version called `name` (exact, case-sensitive match).
    public func versionIndex(named name: UnsafeRawBufferPointer) -> Int? {
        for index in names.indices {
            let matches = names[index].withUnsafeBytes { stored in
                stored.count == name.count && stored.elementsEqual(name)
            }
            if matches { return index }
        }
        return nil
    }

    /// What to do with a request, from its `Authorization` and `X-ANYSCALE-VERSION` values.
    public func decide(authorization: UnsafeRawBufferPointer?, pinned: UnsafeRawBufferPointer?, random: UInt64) -> RouteDecision {
        if let tokens {
            guard let authorization, let token = TokenSet.bearerToken(in: authorization) else { return .unauthorized(.missing) }
            guard tokens.contains(token) else { return .unauthorized(.invalid) }
        }
        if let pinned {
            guard let index = versionIndex(named: pinned) else { return .unknownVersion }
            return plan.isUnavailable(index) ? .unavailable(index, pinned: true) : .pinned(index)
        }
        let index = sampler.pick(random)
        return plan.isUnavailable(index) ? .unavailable(index, pinned: false) : .sampled(index)
    }

    /// Another version for a request that found no reachable endpoint in `excluded`: sampled
    /// by the effective weights without it; nil when no other version serves traffic.
    public func alternative(to excluded: Int, random: UInt64) -> Int? {
        let first = sampler.pick(random)
        var index = first
        // The table interleaves the versions, so the next other entry is a few slots away.
        for step in 1...WeightedSampler.resolution {
            if index != excluded && !plan.isUnavailable(index) { return index }
            index = sampler.entry(at: (sampler.slot(random) + step) % WeightedSampler.resolution)
        }
        return nil
    }
}

public enum RouteDecision: Equatable, Sendable {
    public enum AuthFailure: Equatable, Sendable {
        case missing
        case invalid
    }

    case sampled(Int)
    case pinned(Int)
    /// The version is unhealthy (or its share fails by policy): answered 503.
    case unavailable(Int, pinned: Bool)
    case unauthorized(AuthFailure)
    case unknownVersion
}
