import SwitchyardIO
import SwitchyardRouting
import Testing
@testable import SwitchyardProxy

@Suite struct EndpointHealthTests {
    let thresholds = HealthThresholds(healthy: 2, unhealthy: 3)

    @Test func theFirstGoodAnswerIsAVerdict() {
        var health = EndpointHealth()
        #expect(health.state == .unknown && health.takesRequests)
        #expect(health.record(.healthy, thresholds: thresholds, at: "t1") == .healthy)
        #expect(health.lastCheck == "t1")
    }

    @Test func failuresCountToTheThresholdAndSuccessesBack() {
        var health = EndpointHealth()
        _ = health.record(.healthy, thresholds: thresholds, at: nil)
        #expect(health.record(.failed("refused"), thresholds: thresholds, at: nil) == nil)
        #expect(health.record(.failed("refused"), thresholds: thresholds, at: nil) == nil)
        #expect(health.record(.failed("timed out"), thresholds: thresholds, at: nil) == .unhealthy)
        #expect(!health.takesRequests && health.lastFailure == "timed out")
        #expect(health.record(.healthy, thresholds: thresholds, at: nil) == nil, "one good answer is not enough")
        #expect(health.record(.failed("refused"), thresholds: thresholds, at: nil) == nil, "a failure resets the count")
        #expect(health.record(.healthy, thresholds: thresholds, at: nil) == nil)
        #expect(health.record(.healthy, thresholds: thresholds, at: nil) == .healthy)
        #expect(health.lastFailure == nil)
    }

    @Test func aFailureInBetweenResetsTheStreak() {
        var health = EndpointHealth()
        _ = health.record(.healthy, thresholds: thresholds, at: nil)
        _ = health.record(.failed("a"), thresholds: thresholds, at: nil)
        _ = health.record(.failed("b"), thresholds: thresholds, at: nil)
        _ = health.record(.healthy, thresholds: thresholds, at: nil)
        #expect(health.record(.failed("c"), thresholds: thresholds, at: nil) == nil)
        #expect(health.state == .healthy)
    }

    @Test func drainingIsImmediateAndAGoneDrainingNodeIsUnhealthy() {
        var health = EndpointHealth()
        _ = health.record(.healthy, thresholds: thresholds, at: nil)
        #expect(health.record(.draining, thresholds: thresholds, at: nil) == .draining)
        #expect(!health.takesRequests)
        #expect(health.record(.failed("refused"), thresholds: thresholds, at: nil) == .unhealthy)
        var back = EndpointHealth()
        _ = back.record(.draining, thresholds: thresholds, at: nil)
        _ = back.record(.healthy, thresholds: thresholds, at: nil)
        #expect(back.record(.healthy, thresholds: thresholds, at: nil) == .healthy)
    }
}

@Suite struct HealthBookTests {
    let a = SocketAddress.numericHost("127.0.0.1", port: 1)!
    let b = SocketAddress.numericHost("127.0.0.1", port: 2)!

    private func versions(checked: Bool = true) -> VersionsConfig {
        let check: HealthCheck? = checked ? HealthCheck() : nil
        return VersionsConfig(service: "s", versions: [
            .init(name: "v1", trafficBasisPoints: 7000, endpoints: [Endpoint(host: "127.0.0.1", port: 1), Endpoint(host: "127.0.0.1", port: 2)], healthCheck: check),
            .init(name: "v2", trafficBasisPoints: 3000, endpoints: [Endpoint(host: "127.0.0.1", port: 2)], healthCheck: check),
        ])
    }

    @Test func versionStatesFollowTheirEndpoints() {
        var book = HealthBook()
        let config = versions()
        let targets = [[a, b], [b]]
        book.sync(config, targets: targets, grpcTargets: [[], []])
        #expect(book.routing(config, targets: targets, grpcTargets: [[], []]).plan.states == [.starting, .starting])
        _ = book.record(.healthy, for: .init(version: "v1", address: a), check: HealthCheck(), at: nil)
        for _ in 0..<2 { _ = book.record(.failed("x"), for: .init(version: "v1", address: b), check: HealthCheck(), at: nil) }
        for _ in 0..<2 { _ = book.record(.failed("x"), for: .init(version: "v2", address: b), check: HealthCheck(), at: nil) }
        let routing = book.routing(config, targets: targets, grpcTargets: [[], []])
        #expect(routing.plan.states == [.running, .unhealthy])
        #expect(routing.plan.weights == [10_000, 0])
        #expect(routing.http.avoided[0].contains(1) && !routing.http.avoided[0].contains(0))
        _ = book.record(.draining, for: .init(version: "v1", address: a), check: HealthCheck(), at: nil)
        let drained = book.routing(config, targets: targets, grpcTargets: [[], []])
        #expect(drained.http.draining[0].contains(0))
        #expect(drained.plan.states == [.unhealthy, .unhealthy] && drained.plan.failOpen)
    }

    @Test func uncheckedVersionsRunAndIgnoreReports() {
        var book = HealthBook()
        let config = versions(checked: false)
        book.sync(config, targets: [[a, b], [b]], grpcTargets: [[], []])
        #expect(book.record(.failed("x"), for: .init(version: "v1", address: a), check: HealthCheck(unhealthyThreshold: 1), at: nil) == nil)
        #expect(book.routing(config, targets: [[a, b], [b]], grpcTargets: [[], []]).plan.states == [.running, .running])
    }

    @Test func stateSurvivesASyncAndGoesWithItsEndpoint() {
        var book = HealthBook()
        let config = versions()
        book.sync(config, targets: [[a, b], [b]], grpcTargets: [[], []])
        _ = book.record(.healthy, for: .init(version: "v2", address: b), check: HealthCheck(), at: nil)
        book.sync(config, targets: [[a], [b]], grpcTargets: [[], []])
        #expect(book.endpoints[.init(version: "v2", address: b)]?.state == .healthy)
        #expect(book.endpoints[.init(version: "v1", address: b)] == nil)
    }

    @Test func grpcEndpointsAreAvoidedWithoutChangingTheVersionsState() {
        var book = HealthBook()
        let config = versions()
        let targets = [[a], [b]]
        let grpcTargets = [[a, b], []]
        book.sync(config, targets: targets, grpcTargets: grpcTargets)
        _ = book.record(.healthy, for: .init(version: "v1", address: a), check: HealthCheck(), at: nil)
        _ = book.record(.healthy, for: .init(version: "v2", address: b), check: HealthCheck(), at: nil)
        for _ in 0..<2 {
            _ = book.record(.failed("grpc-status 14"), for: .init(version: "v1", address: a, grpc: true), check: HealthCheck(), at: nil)
        }
        _ = book.record(.draining, for: .init(version: "v1", address: b, grpc: true), check: HealthCheck(), at: nil)
        let routing = book.routing(config, targets: targets, grpcTargets: grpcTargets)
        #expect(routing.plan.states == [.running, .running], "the HTTP endpoints decide the state")
        #expect(routing.grpc.avoided[0].contains(0) && !routing.grpc.avoided[0].contains(1))
        #expect(routing.grpc.draining[0].contains(1) && !routing.grpc.draining[0].contains(0))
        #expect(routing.http.avoided[0] == EndpointSet(), "the same address over HTTP is another endpoint")
    }
}

@Suite struct ProbeAnswerTests {
    private func evaluate(_ text: String, closed: Bool = false) -> ProbeResult? {
        ProbeAnswer.evaluate(Array(text.utf8), closed: closed)
    }

    @Test func readsRayServeAnswers() {
        #expect(evaluate("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess") == .healthy)
        #expect(evaluate("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 27\r\n\r\nThis node is being drained.") == .draining)
        #expect(evaluate("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 27\r\n\r\nThis node") == nil, "waits for the body")
        #expect(evaluate("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\n\r\nbusy now") == .failed("answered 503 instead of 200"))
        #expect(evaluate("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n") == .failed("answered 404 instead of 200"))
    }

    @Test func incompleteAndBrokenAnswersFail() {
        #expect(evaluate("HTTP/1.1 200", closed: false) == nil)
        #expect(evaluate("", closed: true) == .failed("closed the connection without an answer"))
        #expect(evaluate("HTTP/1.1 200", closed: true) == .failed("sent an incomplete response head"))
        if case .failed(let why)? = evaluate("garbage\r\n\r\n") { #expect(why.contains("malformed")) } else { Issue.record("accepted garbage") }
        let oversized = "HTTP/1.1 200 OK\r\nx: " + String(repeating: "a", count: ProbeAnswer.maxBytes)
        #expect(evaluate(oversized) != .healthy)
    }
}
