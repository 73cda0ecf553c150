import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting
import Testing
@testable import SwitchyardProxy

private func address(_ port: UInt16) -> SocketAddress { SocketAddress.numericHost("127.0.0.1", port: port)! }

/// A connection that is never read or written (its descriptor is none).
private func idleConnection(to pool: UpstreamPool) -> UpstreamConnection {
    UpstreamConnection(transport: .plain(SocketTransport(fd: -1)), pool: pool, connected: true, buffers: BufferPools(), limits: HeadLimits())
}

@Suite struct EndpointGroupTests {
    private func pools(_ count: Int) -> [UpstreamPool] {
        (0..<count).map { UpstreamPool(address: address(UInt16(9000 + $0))) }
    }

    @Test func tiesGoRoundRobin() {
        var group = EndpointGroup(pools: pools(3))
        let picks = (0..<6).map { _ in group.pick(excluding: EndpointSet(), now: 0)!.index }
        #expect(picks == [0, 1, 2, 0, 1, 2])
    }

    @Test func theLeastLoadedEndpointWins() {
        let pools = pools(3)
        pools[0].active = 2
        pools[1].active = 1
        pools[2].active = 3
        var group = EndpointGroup(pools: pools)
        #expect(group.pick(excluding: EndpointSet(), now: 0)?.index == 1)
    }

    @Test func triedAndDrainingEndpointsAreNeverPicked() {
        var tried = EndpointSet()
        tried.insert(0)
        var draining = EndpointSet()
        draining.insert(1)
        var group = EndpointGroup(pools: pools(3), draining: draining)
        for _ in 0..<4 { #expect(group.pick(excluding: tried, now: 0)?.index == 2) }
        tried.insert(2)
        #expect(group.pick(excluding: tried, now: 0) == nil)
        var empty = EndpointGroup(pools: [])
        #expect(empty.isEmpty && empty.pick(excluding: EndpointSet(), now: 0) == nil)
    }

    @Test func ejectedAndUnhealthyEndpointsArePickedOnlyWhenNoOtherIsLeft() {
        let pools = pools(3)
        _ = pools[0].ejection.connectFailed(at: 1000)
        var avoided = EndpointSet()
        avoided.insert(1)
        var group = EndpointGroup(pools: pools, avoided: avoided)
        let first = group.pick(excluding: EndpointSet(), now: 1000)
        #expect(first?.index == 2 && first?.ejected == false, "the one endpoint neither ejected nor unhealthy")
        var tried = EndpointSet()
        tried.insert(2)
        pools[1].active = 1
        let fallback = group.pick(excluding: tried, now: 1000)
        #expect(fallback?.index == 0 && fallback?.ejected == true, "of the last resorts, the least loaded")
        let afterBackoff = group.pick(excluding: tried, now: 1000 + Ejection.firstBackoffMs)
        #expect(afterBackoff?.index == 0 && afterBackoff?.ejected == false, "the backoff is over")
    }

    @Test func anIdleConnectionInAnyPoolIsSeen() {
        let pools = pools(2)
        let group = EndpointGroup(pools: pools)
        #expect(!group.hasIdleConnection)
        pools[1].idle.append(idleConnection(to: pools[1]))
        #expect(group.hasIdleConnection)
    }
}

@Suite struct UpstreamPoolsTests {
    private func publication(http: [[UInt16]], grpc: [[UInt16]]) -> Publication {
        let versions = http.indices.map { index in
            VersionsConfig.Version(
                name: "v\(index + 1)", trafficBasisPoints: index == 0 ? 10_000 : 0,
                endpoints: http[index].map { Endpoint(host: "127.0.0.1", port: $0) },
                grpcEndpoints: grpc[index].map { Endpoint(host: "127.0.0.1", port: $0) })
        }
        let config = VersionsConfig(service: "s", versions: versions)
        return Publication(
            snapshot: RoutingSnapshot(generation: 1, config: config, tokens: nil),
            targets: http.map { $0.map(address) }, grpcTargets: grpc.map { $0.map(address) })
    }

    @Test func eachVersionGetsAGroupPerKindInFileOrder() {
        var pools = UpstreamPools()
        let (endpoints, retired) = pools.adopt(publication(http: [[1, 2], [3]], grpc: [[4], []]))
        #expect(retired.isEmpty)
        #expect(endpoints.map { $0.http.pools.map(\.address) } == [[address(1), address(2)], [address(3)]])
        #expect(endpoints.map { $0.grpc.pools.map(\.address) } == [[address(4)], []])
        #expect(endpoints[0].grpc.pools[0].grpc && !endpoints[0].http.pools[0].grpc)
        #expect(pools.byKey.count == 4)
    }

    @Test func poolsOfEndpointsThatStayCarryOverAndTheOthersRetire() {
        var pools = UpstreamPools()
        let (before, _) = pools.adopt(publication(http: [[1, 2], [2]], grpc: [[1], []]))
        #expect(before[0].http.pools[1] === before[1].http.pools[0], "one address, one pool for both versions")
        #expect(before[0].grpc.pools[0] !== before[0].http.pools[0], "the same address over HTTP/2 is another pool")
        _ = before[0].http.pools[0].ejection.connectFailed(at: 0)

        let (after, retired) = pools.adopt(publication(http: [[3, 1], [2]], grpc: [[], []]))
        #expect(after[0].http.pools[1] === before[0].http.pools[0], "kept, with its ejection")
        #expect(after[0].http.pools[1].ejection.failures == 1 && !after[0].http.pools[1].retired)
        #expect(after[1].http.pools[0] === before[1].http.pools[0])
        #expect(Set(retired.map(ObjectIdentifier.init)) == [ObjectIdentifier(before[0].grpc.pools[0])])
        #expect(retired.allSatisfy { $0.retired })
        #expect(pools.byKey.count == 3)
        #expect(pools.someIdleConnection == nil)
        let idle = idleConnection(to: after[1].http.pools[0])
        after[1].http.pools[0].idle.append(idle)
        #expect(pools.someIdleConnection === idle)
    }
}
