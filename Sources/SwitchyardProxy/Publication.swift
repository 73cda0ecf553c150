import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// What the control thread posts to every worker: the routing snapshot plus each version's
/// resolved backend addresses. Immutable and shared by all workers.
public final class Publication: Sendable {
    public let snapshot: RoutingSnapshot
    /// `targets[version]`: the resolved addresses of that version's endpoints, in file order.
    public let targets: [[SocketAddress]]
    /// Which endpoints to avoid or leave alone; the snapshot's plan is `health.plan`.
    let health: HealthRouting
    /// How each version's backends are spoken to, besides their addresses.
    let upstreams: [VersionUpstream]
    /// `grpcTargets[version]`: the resolved addresses of its gRPC endpoints (HTTP/2).
    public let grpcTargets: [[SocketAddress]]

    public convenience init(snapshot: RoutingSnapshot, targets: [[SocketAddress]], grpcTargets: [[SocketAddress]]? = nil) {
        self.init(
            snapshot: snapshot, targets: targets, health: HealthRouting(configured: snapshot.config),
            upstreams: targets.map { VersionUpstream(tls: nil, serverNames: $0.map { _ in "" }, authorization: nil) },
            grpcTargets: grpcTargets ?? targets.map { _ in [] })
    }

    init(snapshot: RoutingSnapshot, targets: [[SocketAddress]], health: HealthRouting, upstreams: [VersionUpstream],
         grpcTargets: [[SocketAddress]]) {
        precondition(targets.count == snapshot.versions.count && health.http.avoided.count == targets.count && upstreams.count == targets.count
            && grpcTargets.count == targets.count)
        self.snapshot = snapshot
        self.targets = targets
        self.health = health
        self.upstreams = upstreams
        self.grpcTargets = grpcTargets
    }
}

/// What a worker needs to reach one version's backends, besides their addresses.
struct VersionUpstream: Sendable {
    /// Set when they speak TLS.
    let tls: TLSClientContext?
    /// Per target address: the name sent as SNI and checked against the certificate.
    let serverNames: [String]
    /// `Authorization: Bearer <token>\r\n`, sent instead of the client's, when the version has
    /// an upstream token.
    let authorization: [UInt8]?
}
