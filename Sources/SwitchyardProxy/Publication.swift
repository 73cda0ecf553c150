import SwitchyardHTTP
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

/// A worker's view of one publication: its own copy of the routing snapshot plus worker-local
/// endpoint state.
///
/// Everything a request touches — this object, the snapshot copy, the header lines, the pools —
/// belongs to one worker, so the reference counting a request does never touches a cache line
/// another worker writes. The shared `Publication` is only read when this object is built.
final class WorkerRoutes {
    let snapshot: RoutingSnapshot
    /// `pools[version][endpoint]`.
    let pools: [[UpstreamPool]]
    /// `grpcPools[version][endpoint]`: its gRPC endpoints (HTTP/2).
    let grpcPools: [[UpstreamPool]]
    /// `X-ANYSCALE-VERSION: <name>\r\n`, one per version.
    let versionHeaderLines: [[UInt8]]
    /// Per version: the `Authorization` line its backends get instead of the client's, if any.
    let authorizationLines: [[UInt8]?]
    /// The versions' names, for the access log.
    let versionNames: [[UInt8]]
    /// Round-robin cursor per version, for ties between equally loaded endpoints.
    var cursors: [Int]
    var grpcCursors: [Int]
    /// This worker's stats of each version.
    let stats: [VersionStatsCell]
    /// Per version: endpoints that failed their health checks (picked only when no other is
    /// left) and endpoints being drained (never picked).
    let avoided: [EndpointSet]
    let draining: [EndpointSet]
    /// The same for its gRPC endpoints.
    let grpcAvoided: [EndpointSet]
    let grpcDraining: [EndpointSet]

    init(publication: Publication, pools: [[UpstreamPool]], grpcPools: [[UpstreamPool]], stats: [VersionStatsCell]) {
        self.snapshot = publication.snapshot.workerCopy()
        self.pools = pools
        self.grpcPools = grpcPools
        self.grpcCursors = grpcPools.map { _ in 0 }
        self.avoided = publication.health.http.avoided
        self.draining = publication.health.http.draining
        self.grpcAvoided = publication.health.grpc.avoided
        self.grpcDraining = publication.health.grpc.draining
        self.stats = stats
        self.versionHeaderLines = snapshot.versions.map { Array("\(VersionField.http1Name): \($0.name)\r\n".utf8) }
        self.versionNames = snapshot.versions.map { Array($0.name.utf8) }
        self.authorizationLines = publication.upstreams.map(\.authorization)
        self.cursors = pools.map { _ in 0 }
    }

    /// The least loaded endpoint of `version` not yet tried for this request (of its gRPC
    /// endpoints for a gRPC call); ties go round robin. Ejected endpoints (see `Ejection`) and
    /// those failing their health checks are picked only when no other one is left; draining
    /// ones never.
    func pickPool(version: Int, excluding tried: EndpointSet, now: UInt64, grpc: Bool = false) -> (index: Int, pool: UpstreamPool, ejected: Bool)? {
        let candidates = grpc ? grpcPools[version] : pools[version]
        let start = grpc ? grpcCursors[version] : cursors[version]
        let avoided = grpc ? grpcAvoided[version] : self.avoided[version], draining = grpc ? grpcDraining[version] : self.draining[version]
        var best: (index: Int, pool: UpstreamPool)?
        var bestEjected: (index: Int, pool: UpstreamPool)?
        for offset in 0..<candidates.count {
            let index = (start + offset) % candidates.count
            if tried.contains(index) || draining.contains(index) { continue }
            let pool = candidates[index]
            if pool.ejection.isEjected(at: now) || avoided.contains(index) {
                if pool.active < bestEjected?.pool.active ?? Int.max { bestEjected = (index, pool) }
            } else if pool.active < best?.pool.active ?? Int.max {
                best = (index, pool)
            }
        }
        guard let picked = best ?? bestEjected else { return nil }
        if grpc {
            grpcCursors[version] = (picked.index + 1) % candidates.count
        } else {
            cursors[version] = (picked.index + 1) % candidates.count
        }
        return (picked.index, picked.pool, best == nil)
    }
}

/// Keep-alive connections to one backend address, owned by one worker.
final class UpstreamPool {
    /// What tells two pools apart: the address, and for TLS the context and server name.
    struct Key: Hashable {
        let address: SocketAddress
        let tls: ObjectIdentifier?
        let serverName: String
        /// A gRPC endpoint, spoken to over HTTP/2.
        let grpc: Bool
    }

    let address: SocketAddress
    /// A gRPC endpoint (its connections are `multiplexed`).
    let grpc: Bool
    /// Set for an `https` backend; `serverName` is its SNI and verified name.
    let tls: TLSClientContext?
    let serverName: String
    /// The backend's last TLS session, offered when a new connection is made.
    let sessions: TLSSessionSlot?
    /// `address` as text, for the access log.
    let addressText: [UInt8]
    /// Idle connections, most recently used last (reused first: least likely to have been
    /// closed by the backend's own idle timer).
    var idle: [UpstreamConnection] = []
    /// HTTP/2 connections to a gRPC endpoint, each carrying many calls.
    var multiplexed: [H2UpstreamConnection] = []
    /// Requests in flight to this address from this worker.
    var active = 0
    /// Set when a publication no longer names this address: connections close when done.
    var retired = false
    /// Whether recent connects failed (kept across publications while the address stays).
    var ejection = Ejection()
    /// Failed connects in all, for `/metrics`.
    var connectFailures: UInt64 = 0

    init(address: SocketAddress, tls: TLSClientContext? = nil, serverName: String = "", grpc: Bool = false) {
        self.address = address
        self.grpc = grpc
        self.tls = tls
        self.serverName = serverName
        self.sessions = tls == nil ? nil : TLSSessionSlot()
        self.addressText = Array(address.description.utf8)
        idle.reserveCapacity(64)
    }
}
