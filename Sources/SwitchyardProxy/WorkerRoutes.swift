import SwitchyardHTTP
import SwitchyardRouting

/// A worker's view of one publication: its own copy of the routing snapshot plus worker-local
/// endpoint state.
///
/// Everything a request touches — this object, the snapshot copy, the header lines, the pools —
/// belongs to one worker, so the reference counting a request does never touches a cache line
/// another worker writes. The shared `Publication` is only read when this object is built.
final class WorkerRoutes {
    let snapshot: RoutingSnapshot
    /// Per version: its endpoints on this worker, one group per kind.
    var endpoints: [VersionEndpoints]
    /// `X-ANYSCALE-VERSION: <name>\r\n`, one per version.
    let versionHeaderLines: [[UInt8]]
    /// Per version: the `Authorization` line its backends get instead of the client's, if any.
    let authorizationLines: [[UInt8]?]
    /// The versions' names, for the access log.
    let versionNames: [[UInt8]]
    /// This worker's stats of each version.
    let stats: [VersionStatsCell]

    init(publication: Publication, endpoints: [VersionEndpoints], stats: [VersionStatsCell]) {
        self.snapshot = publication.snapshot.workerCopy()
        self.endpoints = endpoints
        self.stats = stats
        self.versionHeaderLines = snapshot.versions.map { Array("\(VersionField.http1Name): \($0.name)\r\n".utf8) }
        self.versionNames = snapshot.versions.map { Array($0.name.utf8) }
        self.authorizationLines = publication.upstreams.map(\.authorization)
    }

    /// The endpoint to try next for a request to `version` (see `EndpointGroup.pick`).
    @inline(__always)
    func pick(version: Int, grpc: Bool, excluding tried: EndpointSet, now: UInt64) -> EndpointGroup.Pick? {
        grpc ? endpoints[version].grpc.pick(excluding: tried, now: now) : endpoints[version].http.pick(excluding: tried, now: now)
    }
}

/// One version's endpoints, by the kind of request they take.
struct VersionEndpoints {
    /// Its `endpoints`, spoken to over HTTP/1.1.
    var http: EndpointGroup
    /// Its `grpc_endpoints`, spoken to over HTTP/2 (cleartext).
    var grpc: EndpointGroup
}

/// One version's endpoints of one kind, as one worker sees them: a pool per endpoint in file
/// order, the health checker's verdicts by position, and the round-robin cursor.
struct EndpointGroup {
    /// The endpoint picked, by position in the group; `ejected` when it was picked although
    /// ejected or unhealthy, because no other was left.
    typealias Pick = (index: Int, pool: UpstreamPool, ejected: Bool)

    let pools: [UpstreamPool]
    /// Endpoints that failed their health checks: picked only when no other is left.
    let avoided: EndpointSet
    /// Endpoints being drained: never picked.
    let draining: EndpointSet
    /// Where the next tie between equally loaded endpoints goes.
    private var cursor = 0

    init(pools: [UpstreamPool], avoided: EndpointSet = EndpointSet(), draining: EndpointSet = EndpointSet()) {
        self.pools = pools
        self.avoided = avoided
        self.draining = draining
    }

    var isEmpty: Bool { pools.isEmpty }

    /// Whether one of its pools holds an idle connection (a request can be served without a
    /// new socket).
    var hasIdleConnection: Bool { pools.contains { !$0.idle.isEmpty } }

    /// The least loaded endpoint not in `tried`; ties go round robin. Ejected endpoints (see
    /// `Ejection`) and unhealthy ones are picked only when no other one is left; draining
    /// ones never. Nil when none is left.
    mutating func pick(excluding tried: EndpointSet, now: UInt64) -> Pick? {
        var best: (index: Int, pool: UpstreamPool)?
        var bestEjected: (index: Int, pool: UpstreamPool)?
        for offset in 0..<pools.count {
            let index = (cursor + offset) % pools.count
            if tried.contains(index) || draining.contains(index) { continue }
            let pool = pools[index]
            if pool.ejection.isEjected(at: now) || avoided.contains(index) {
                if pool.active < bestEjected?.pool.active ?? Int.max { bestEjected = (index, pool) }
            } else if pool.active < best?.pool.active ?? Int.max {
                best = (index, pool)
            }
        }
        guard let picked = best ?? bestEjected else { return nil }
        cursor = (picked.index + 1) % pools.count
        return (picked.index, picked.pool, best == nil)
    }
}
