import SwitchyardIO
import SwitchyardRouting

/// The control thread's record of every checked endpoint's health, and what it means for
/// routing: version states, the traffic plan, and the endpoints workers should avoid.
///
/// An endpoint is known by its version and address: two versions may share an address but
/// probe different paths. Pure state; the prober and the workers' reports feed it.
struct HealthBook {
    struct Key: Hashable, Sendable {
        let version: String
        let address: SocketAddress
    }

    private(set) var endpoints: [Key: EndpointHealth] = [:]

    /// Keeps the entries of endpoints still configured with checks on; new ones start UNKNOWN.
    mutating func sync(_ versions: VersionsConfig, targets: [[SocketAddress]]) {
        var kept: [Key: EndpointHealth] = [:]
        for (index, version) in versions.versions.enumerated() where version.healthCheck != nil {
            for address in targets[index] {
                let key = Key(version: version.name, address: address)
                kept[key] = endpoints[key] ?? EndpointHealth()
            }
        }
        endpoints = kept
    }

    /// Applies a probe result or a worker's failed connect; the new state when it changed.
    /// Endpoints not (or no longer) checked are ignored.
    mutating func record(_ result: ProbeResult, for key: Key, check: HealthCheck, at time: String?) -> EndpointHealth.State? {
        guard var health = endpoints[key] else { return nil }
        let thresholds = HealthThresholds(healthy: check.healthyThreshold, unhealthy: check.unhealthyThreshold)
        let changed = health.record(result, thresholds: thresholds, at: time)
        endpoints[key] = health
        return changed
    }

    /// The health of each of a version's addresses; nil when the version is not checked.
    func health(of version: VersionsConfig.Version, addresses: [SocketAddress]) -> [EndpointHealth]? {
        guard version.healthCheck != nil else { return nil }
        return addresses.map { endpoints[Key(version: version.name, address: $0)] ?? EndpointHealth() }
    }

    /// RUNNING with a healthy endpoint (or without checks), STARTING while some have no
    /// verdict, UNHEALTHY when none can take a request.
    static func versionState(_ endpoints: [EndpointHealth]?) -> TrafficPlan.VersionState {
        guard let endpoints else { return .running }
        if endpoints.contains(where: { $0.state == .healthy }) { return .running }
        if endpoints.contains(where: { $0.state == .unknown }) { return .starting }
        return .unhealthy
    }

    /// What the workers route with, given the current versions and their addresses.
    func routing(_ versions: VersionsConfig, targets: [[SocketAddress]]) -> HealthRouting {
        var states: [TrafficPlan.VersionState] = []
        var avoided: [EndpointSet] = []
        var draining: [EndpointSet] = []
        for (index, version) in versions.versions.enumerated() {
            let endpoints = health(of: version, addresses: targets[index])
            states.append(Self.versionState(endpoints))
            var avoid = EndpointSet(), drain = EndpointSet()
            for (position, endpoint) in (endpoints ?? []).enumerated() {
                if endpoint.state == .unhealthy { avoid.insert(position) }
                if endpoint.state == .draining { drain.insert(position) }
            }
            avoided.append(avoid)
            draining.append(drain)
        }
        return HealthRouting(plan: TrafficPlan(config: versions, states: states), avoided: avoided, draining: draining)
    }
}

/// Health as the workers route with it.
struct HealthRouting: Sendable, Equatable {
    let plan: TrafficPlan
    /// Per version: endpoints that failed their checks, picked only when no other is left.
    let avoided: [EndpointSet]
    /// Per version: endpoints being drained, which get no new requests.
    let draining: [EndpointSet]

    /// Every version running as configured, no endpoint avoided.
    init(configured versions: VersionsConfig) {
        self.init(plan: TrafficPlan(configured: versions), avoided: versions.versions.map { _ in EndpointSet() },
                  draining: versions.versions.map { _ in EndpointSet() })
    }

    init(plan: TrafficPlan, avoided: [EndpointSet], draining: [EndpointSet]) {
        self.plan = plan
        self.avoided = avoided
        self.draining = draining
    }
}
