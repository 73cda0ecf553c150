import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

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

/// A worker's pools, one per endpoint, kept across publications while an endpoint stays named:
/// its idle connections, ejection backoff and failure count carry over a reload.
struct UpstreamPools {
    private(set) var byKey: [UpstreamPool.Key: UpstreamPool] = [:]

    /// The endpoint groups of `publication`, made of the pools of endpoints that stay and new
    /// ones. The pools it no longer names are dropped and come back in `retired`, marked
    /// retired: their connections close when done.
    mutating func adopt(_ publication: Publication) -> (endpoints: [VersionEndpoints], retired: [UpstreamPool]) {
        var kept: [UpstreamPool.Key: UpstreamPool] = [:]
        // Versions that name the same endpoint share its pool.
        func pool(_ key: UpstreamPool.Key, _ make: () -> UpstreamPool) -> UpstreamPool {
            let pool = kept[key] ?? byKey[key] ?? make()
            kept[key] = pool
            return pool
        }
        var endpoints: [VersionEndpoints] = []
        for version in publication.targets.indices {
            let upstream = publication.upstreams[version]
            let http = publication.targets[version].enumerated().map { index, address in
                let serverName = upstream.tls == nil ? "" : upstream.serverNames[index]
                let key = UpstreamPool.Key(address: address, tls: upstream.tls.map(ObjectIdentifier.init), serverName: serverName, grpc: false)
                return pool(key) { UpstreamPool(address: address, tls: upstream.tls, serverName: serverName) }
            }
            let grpc = publication.grpcTargets[version].map { address in
                pool(UpstreamPool.Key(address: address, tls: nil, serverName: "", grpc: true)) { UpstreamPool(address: address, grpc: true) }
            }
            let health = publication.health
            endpoints.append(VersionEndpoints(
                http: EndpointGroup(pools: http, avoided: health.http.avoided[version], draining: health.http.draining[version]),
                grpc: EndpointGroup(pools: grpc, avoided: health.grpc.avoided[version], draining: health.grpc.draining[version])))
        }
        var retired: [UpstreamPool] = []
        for (key, pool) in byKey where kept[key] == nil {
            pool.retired = true
            retired.append(pool)
        }
        byKey = kept
        return (endpoints, retired)
    }

    /// The most recently idle connection of some pool, to close when a socket is needed elsewhere.
    var someIdleConnection: UpstreamConnection? {
        byKey.values.first { !$0.idle.isEmpty }?.idle.last
    }
}
