import Testing
@testable import SwitchyardProxy

@Suite struct WorkerTallyTests {
    @Test func aVersionKeepsItsCellAcrossReloads() {
        var tally = WorkerTally()
        let v1 = tally.cell(for: "v1")
        #expect(tally.cell(for: "v2") !== v1)
        #expect(tally.cell(for: "v1") === v1)
        #expect(tally.cell(for: "") !== tally.unrouted, "the unrouted cell is never a version's")
    }

    @Test func theFirstTickCopiesAndAnIdleWorkerCopiesNothing() {
        var tally = WorkerTally()
        let stats = WorkerStats(descriptorBudget: 8)
        var asked = 0
        let failures = { () -> [EndpointFailures] in
            asked += 1
            return [EndpointFailures(version: "v1", endpoint: "127.0.0.1:1", failures: 3)]
        }
        tally.publish(to: stats, failures: failures)
        #expect(asked == 1 && stats.versions.load().map(\.name) == [""])
        #expect(stats.connectFailures.load().map(\.failures) == [3])
        tally.publish(to: stats, failures: failures)
        #expect(asked == 1, "nothing happened since the last copy")

        tally.counters.refusedConnections += 1
        tally.publish(to: stats, failures: failures)
        #expect(asked == 2 && stats.counters.load().refusedConnections == 1)

        tally.cell(for: "v1").stats.routed()
        _ = tally.cell(for: "v2")
        tally.publish(to: stats, failures: failures)
        #expect(asked == 3, "a version was added")
        #expect(stats.versions.load().map(\.name) == ["", "v1", "v2"])
        #expect(stats.versions.load()[1].stats.started == 1)
    }
}

@Suite struct ReportThrottleTests {
    @Test func theFirstReportGoesAtOnceThenOneASecond() {
        var throttle = ReportThrottle()
        let reported = [0, 999, 1_000, 1_500, 2_001, 2_002, 60_000].map { throttle.mayReport(now: $0) }
        #expect(reported == [true, false, true, false, true, false, true])
    }
}
