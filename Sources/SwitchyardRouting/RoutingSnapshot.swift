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
    public let sampler: WeightedSampler
    private let names: [[UInt8]]

    public init(generation: UInt64, config: VersionsConfig, tokens: TokenSet?) {
        self.generation = generation
        self.config = config
        self.tokens = tokens
        self.sampler = WeightedSampler(weights: config.versions.map(\.trafficBasisPoints))
        self.names = config.versions.map { Array($0.name.utf8) }
    }

    public var versions: [VersionsConfig.Version] { config.versions }

    /// The same snapshot with its own sampler table, names and tokens. Each worker routes with
    /// such a copy: retaining or reading shared arrays would make workers bump reference
    /// counts on the same cache lines with every request.
    public func workerCopy() -> RoutingSnapshot {
        RoutingSnapshot(generation: generation, config: config, tokens: tokens?.deepCopy())
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
            return .pinned(index)
        }
        return .sampled(sampler.pick(random))
    }
}

public enum RouteDecision: Equatable, Sendable {
    public enum AuthFailure: Equatable, Sendable {
        case missing
        case invalid
    }

    case sampled(Int)
    case pinned(Int)
    case unauthorized(AuthFailure)
    case unknownVersion
}
