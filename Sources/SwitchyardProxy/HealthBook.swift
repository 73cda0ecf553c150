import SwitchyardIO
import SwitchyardRouting

/// The control thread's record of every checked endpoint's health, and what it means for
/// routing: version states, the traffic plan, and the endpoints workers should avoid.
///
/// An endpoint is known by its version, address and protocol: two versions may share an
/// address but probe different paths. A version's gRPC endpoints are checked with Ray Serve's
/// gRPC `Healthz`; they decide which gRPC endpoint a call goes to, not the version's state
/// (its HTTP endpoints do). Pure state; the prober and the workers' reports feed it.
struct HealthBook {
    struct Key: Hashable, Sendable {
        let version: String
        let address: SocketAddress
        /// One of the version's `grpc_endpoints`.
        var grpc = false
    }

    private(set) var endpoints: [Key: EndpointHealth] = [:]

    /// Keeps the entries of endpoints still configured with checks on; new ones start UNKNOWN.
    mutating func sync(_ versions: VersionsConfig, targets: [[SocketAddress]], grpcTargets: [[SocketAddress]]) {
        var kept: [Key: EndpointHealth] = [:]
        for (index, version) in versions.versions.enumerated() where version.healthCheck != nil {
            for address in targets[index] {
                let key = Key(version: version.name, address: address)
                kept[key] = endpoints[key] ?? EndpointHealth()
            }
            for address in grpcTargets[index] {
                let key = Key(version: version.name, address: address, grpc: true)
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

    /// The health of each of a version's addresses (of its gRPC endpoints with `grpc`); nil
    /// when the version is not checked.
    func health(of version: VersionsConfig.Version, addresses: [SocketAddress], grpc: Bool = false) -> [EndpointHealth]? {
        guard version.healthCheck != nil else { return nil }
        return addresses.map { endpoints[Key(version: version.name, address: $0, grpc: grpc)] ?? EndpointHealth() }
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
    func routing(_ versions: VersionsConfig, targets: [[SocketAddress]], grpcTargets: [[SocketAddress]]) -> HealthRouting {
        var states: [TrafficPlan.VersionState] = []
        var http = HealthRouting.Avoidance(), grpc = HealthRouting.Avoidance()
        for (index, version) in versions.versions.enumerated() {
            let endpoints = health(of: version, addresses: targets[index])
            states.append(Self.versionState(endpoints))
            http.append(endpoints)
            grpc.append(health(of: version, addresses: grpcTargets[index], grpc: true))
        }
        return HealthRouting(plan: TrafficPlan(config: versions, states: states), http: http, grpc: grpc)
    }
}

/// Health as the workers route with it.
struct HealthRouting: Sendable, Equatable {
    /// Per version, the endpoints (by position in its list) to pick last or not at all.
    struct Avoidance: Sendable, Equatable {
        /// Endpoints that failed their checks, picked only when no other is left.
        var avoided: [EndpointSet] = []
        /// Endpoints being drained, which get no new requests.
        var draining: [EndpointSet] = []

        mutating func append(_ endpoints: [EndpointHealth]?) {
            var avoid = EndpointSet(), drain = EndpointSet()
            for (position, endpoint) in (endpoints ?? []).enumerated() {
                if endpoint.state == .unhealthy { avoid.insert(position) }
                if endpoint.state == .draining { drain.insert(position) }
            }
            avoided.append(avoid)
            draining.append(drain)
        }
    }

    let plan: TrafficPlan
    /// The versions' HTTP endpoints.
    let http: Avoidance
    /// Their gRPC endpoints.
    let grpc: Avoidance

    /// Every version running as configured, no endpoint avoided.
    init(configured versions: VersionsConfig) {
        var none = Avoidance()
        for _ in versions.versions { none.append(nil) }
        self.init(plan: TrafficPlan(configured: versions), http: none, grpc: none)
    }

    init(plan: TrafficPlan, http: Avoidance, grpc: Avoidance) {
        self.plan = plan
        self.http = http
        self.grpc = grpc
    }
}
