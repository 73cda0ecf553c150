import Testing
@testable import SwitchyardRouting

@Suite struct TrafficPlanTests {
    typealias State = TrafficPlan.VersionState

    private func config(_ versions: [(String, Int, UnhealthyPolicy)]) -> VersionsConfig {
        VersionsConfig(service: "s", versions: versions.map { name, percent, policy in
            VersionsConfig.Version(name: name, trafficBasisPoints: percent * 100, endpoints: [Endpoint(host: "127.0.0.1", port: 1)],
                                   onUnhealthy: policy)
        })
    }

    @Test func everyVersionRunningKeepsTheConfiguredSplit() {
        let plan = TrafficPlan(config: config([("v1", 70, .redistribute), ("v2", 30, .fail)]), states: [.running, .starting])
        #expect(plan.weights == [7000, 3000])
        #expect(plan.effective == [7000, 3000])
        #expect(plan.unavailable == 0)
        #expect(!plan.failOpen)
    }

    @Test func redistributeSharesInProportionToTheRunningVersions() {
        let plan = TrafficPlan(config: config([("v1", 50, .redistribute), ("v2", 30, .redistribute), ("v3", 20, .redistribute)]),
                               states: [.running, .unhealthy, .running])
        #expect(plan.weights == [7143, 0, 2857])
        #expect(plan.weights.reduce(0, +) == 10_000)
        #expect(plan.isUnavailable(1) && !plan.isUnavailable(0) && !plan.isUnavailable(2))
    }

    @Test func failKeepsTheShareToAnswer503() {
        let plan = TrafficPlan(config: config([("v1", 70, .redistribute), ("v2", 30, .fail)]), states: [.running, .unhealthy])
        #expect(plan.weights == [7000, 3000])
        #expect(plan.effective == [7000, 0])
        #expect(plan.isUnavailable(1))
    }

    @Test func fallbackGoesToItsVersionWhileThatRuns() {
        let versions = config([("v1", 60, .redistribute), ("v2", 40, .fallback("stable")), ("stable", 0, .redistribute)])
        let plan = TrafficPlan(config: versions, states: [.running, .unhealthy, .running])
        #expect(plan.weights == [6000, 0, 4000])
        let fallbackDown = TrafficPlan(config: versions, states: [.running, .unhealthy, .unhealthy])
        #expect(fallbackDown.weights == [10_000, 0, 0])
    }

    @Test func everyVersionUnhealthyFailsOpenToTheConfiguredSplit() {
        let plan = TrafficPlan(config: config([("v1", 70, .redistribute), ("v2", 30, .fail)]), states: [.unhealthy, .unhealthy])
        #expect(plan.weights == [7000, 3000])
        #expect(plan.effective == [7000, 3000])
        #expect(plan.unavailable == 0)
        #expect(plan.failOpen)
    }

    @Test func aShareNobodyRunningCanTakeStaysWhereItIs() {
        // The only running version is dark (0 %): it does not inherit production traffic.
        let plan = TrafficPlan(config: config([("v1", 100, .redistribute), ("canary", 0, .redistribute)]), states: [.unhealthy, .running])
        #expect(plan.weights == [10_000, 0])
        #expect(!plan.isUnavailable(0))
        #expect(plan.failOpen)
    }

    @Test func apportionIsExact() {
        #expect(TrafficPlan.apportion(10_000, among: [1, 1, 1]) == [3334, 3333, 3333])
        #expect(TrafficPlan.apportion(1, among: [1, 3]) == [0, 1])
        #expect(TrafficPlan.apportion(5, among: [0, 0]) == [0, 0])
    }

    @Test func decideAnswersUnavailableForPinnedAndSampledRequests() {
        let versions = config([("v1", 70, .redistribute), ("v2", 30, .fail)])
        let snapshot = RoutingSnapshot(generation: 1, config: versions, tokens: nil,
                                       plan: TrafficPlan(config: versions, states: [.running, .unhealthy]))
        let pinned = Array("v2".utf8).withUnsafeBytes { snapshot.decide(authorization: nil, pinned: $0, random: 0) }
        #expect(pinned == .unavailable(1, pinned: true))
        var random = FastRandom(seed: 7)
        var unavailable = 0
        for _ in 0..<10_000 {
            switch snapshot.decide(authorization: nil, pinned: nil, random: random.next()) {
            case .unavailable(1, pinned: false): unavailable += 1
            case .sampled(0): break
            default: Issue.record("unexpected decision")
            }
        }
        #expect(abs(unavailable - 3000) < 300)
        #expect(snapshot.alternative(to: 1, random: 12345) == 0)
        #expect(snapshot.alternative(to: 0, random: 12345) == nil, "v2 is unavailable, so nothing else serves")
    }
}
