import Testing
@testable import SwitchyardDeploy
@testable import SwitchyardRouting

private let handWritten = """
    {"service": "demo", "versions": [
      {"name": "v1", "traffic_percent": 30, "endpoints": ["127.0.0.1:8001"], "health_check": {"path": "/ready"}},
      {"name": "v2", "traffic_percent": 70, "endpoints": ["127.0.0.1:8002"]}
    ]}
    """

private func document(_ text: String = handWritten) throws -> VersionsDocument {
    try VersionsDocument(parsing: Array(text.utf8), file: "versions.json")
}

private func traffic(_ text: String) throws(ConfigError) -> TrafficRequest {
    try TrafficRequest.parse(Array(text.utf8), source: "--versions")
}

private let ana = Author(actor: "ana@host", command: "deploy", time: "2026-12-04T03:40:00.000Z")

@Suite struct TrafficRequestTests {
    @Test func readsAnyscalesArray() throws {
        let request = try traffic(#"[{"name":"v1","traffic_percent":12.5}, {"name":"v2","traffic_percent":87.5}]"#)
        #expect(request.shares.map(\.basisPoints) == [1250, 8750])
    }

    @Test func aSumOffByOneNamesTheSumAndAFix() {
        #expect(throws: ConfigError.self) { try traffic(#"[{"name":"v1","traffic_percent":60},{"name":"v2","traffic_percent":39}]"#) }
        do throws(ConfigError) {
            _ = try traffic(#"[{"name":"v1","traffic_percent":60},{"name":"v2","traffic_percent":41}]"#)
            Issue.record("a sum of 101 was taken")
        } catch {
            #expect(error.message == "traffic_percent values sum to 101, they must sum to 100 (v2: 40 instead of 41 would do)")
        }
    }

    @Test func unknownKeysDuplicatesAndTooManyAreErrorsWithTheirColumn() {
        do throws(ConfigError) {
            _ = try traffic(#"[{"name":"v1","traffic_percent":100,"weight":1}]"#)
            Issue.record("an unknown key was taken")
        } catch {
            #expect(error.position == SourcePosition(line: 1, column: 37))
            #expect(error.message.contains("unknown field \"weight\""))
        }
        do throws(ConfigError) {
            _ = try traffic(#"[{"name":"v1","traffic_percent":50},{"name":"v1","traffic_percent":50}]"#)
            Issue.record("a duplicate was taken")
        } catch {
            #expect(error.message == "version \"v1\" is listed twice; each version once")
        }
        let eleven = "[" + (0..<11).map { #"{"name":"v\#($0)","traffic_percent":\#($0 == 0 ? 100 : 0)}"# }.joined(separator: ",") + "]"
        #expect(throws: ConfigError.self) { try traffic(eleven) }
    }
}

@Suite struct VersionsEditTests {
    @Test func aDeployMovesWeightsKeepsOtherFieldsAndRecordsThePreviousState() throws {
        let before = try document()
        let request = DeployRequest(traffic: try traffic(#"[{"name":"v1","traffic_percent":50},{"name":"v2","traffic_percent":50}]"#))
        let (after, summary) = try before.deploying(request, by: ana)
        #expect(after.generation == 1)
        #expect(after.versions[0].compactText == #"{"name": "v1", "traffic_percent": 50, "endpoints": ["127.0.0.1:8001"], "health_check": {"path": "/ready"}, "created_at": "2026-12-04T03:40:00.000Z"}"#)
        #expect(summary.text == ["v1: 30% → 50%", "v2: 70% → 50%"])
        #expect(after.history.count == 1)
        #expect(after.history[0][member: "versions"]?.compactText == JSONNode(.array(before.versions)).compactText)
        let config = try VersionsConfig.parse(after.bytes, file: "versions.json")
        #expect(config.generation == 1)
        #expect(config.change == VersionsConfig.Change(time: ana.time, actor: "ana@host", command: "deploy"))
        #expect(config.history.first?.change == nil)
        #expect(config.versions.map(\.createdAt) == [ana.time, ana.time])
    }

    @Test func aNewVersionNeedsEndpointsAndAnOmittedOneIsRemoved() throws {
        let before = try document()
        var request = DeployRequest(traffic: try traffic(#"[{"name":"v1","traffic_percent":90},{"name":"v3","traffic_percent":10}]"#))
        #expect(throws: DeployError.self) { try before.deploying(request, by: ana) }
        request.endpoints["v3"] = ["127.0.0.1:8003"]
        let (after, summary) = try before.deploying(request, by: ana)
        #expect(after.versionNames == ["v1", "v3"])
        #expect(summary.added == ["v3"])
        #expect(summary.removed == ["v2"])
        #expect(summary.text.last == "v2: removed (was 70%; requests in flight finish)")
    }

    @Test func withoutASplitADescribedVersionJoinsDark() throws {
        var request = DeployRequest()
        request.described = ["v-abc"]
        request.endpoints["v-abc"] = ["127.0.0.1:8009"]
        let (after, _) = try document().deploying(request, by: ana)
        #expect(after.versions.last.flatMap(VersionsDocument.share) == 0)
        #expect(after.versions.first.flatMap(VersionsDocument.share) == 3000)
    }

    @Test func theServiceNameMustMatch() throws {
        #expect(throws: DeployError.self) { try document().deploying(DeployRequest(service: "other"), by: ana) }
    }

    @Test func aRevertWritesAnEarlierStateExactly() throws {
        var current = try document()
        var states = [JSONNode(.array(current.versions)).compactText]
        for split in [(10, 90), (40, 60), (25, 75)] {
            let request = DeployRequest(traffic: try traffic(#"[{"name":"v1","traffic_percent":\#(split.0)},{"name":"v2","traffic_percent":\#(split.1)}]"#))
            current = try current.deploying(request, by: ana).0
            states.append(JSONNode(.array(current.versions)).compactText)
        }
        for target in 0...2 {
            let (reverted, _) = try current.reverting(to: target, by: ana)
            #expect(JSONNode(.array(reverted.versions)).compactText == states[target])
            #expect(reverted.generation == 4)
        }
        let (previous, _) = try current.reverting(to: nil, by: ana)
        #expect(JSONNode(.array(previous.versions)).compactText == states[2])
        #expect(throws: DeployError.self) { try current.reverting(to: 3, by: ana) }
        #expect(throws: DeployError.self) { try current.reverting(to: 17, by: ana) }
    }

    @Test func historyIsBoundedByEntriesAndBytes() throws {
        var current = try document()
        for step in 0..<30 {
            let request = DeployRequest(traffic: try traffic(#"[{"name":"v1","traffic_percent":\#(step)},{"name":"v2","traffic_percent":\#(100 - step)}]"#))
            current = try current.deploying(request, by: ana).0
        }
        #expect(current.history.count == VersionsConfig.historyLimit.entries)
        #expect(VersionsDocument.generation(of: current.history[0]) == 29)
        _ = try VersionsConfig.parse(current.bytes, file: "versions.json")

        let long = Author(actor: "ana@host", command: String(repeating: "x", count: 4000), time: ana.time)
        var large = try document()
        for step in 0..<20 {
            let request = DeployRequest(traffic: try traffic(#"[{"name":"v1","traffic_percent":\#(step)},{"name":"v2","traffic_percent":\#(100 - step)}]"#))
            large = try large.deploying(request, by: long).0
        }
        let historyBytes = large.history.reduce(0) { $0 + VersionsDocument.entryText($1, indent: "    ").utf8.count }
        #expect(historyBytes <= VersionsConfig.historyLimit.bytes)
    }

    @Test func theProxyRejectsAHistoryOutOfOrderOrWithInvalidVersions() throws {
        func file(historyGeneration: Int, historyShare: Int) -> [UInt8] {
            Array("""
                {"service": "demo", "generation": 2, "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": ["127.0.0.1:1"]}],
                 "history": [{"generation": \(historyGeneration), "versions": [{"name": "v1", "traffic_percent": \(historyShare), "endpoints": ["127.0.0.1:1"]}]}]}
                """.utf8)
        }
        #expect(try VersionsConfig.parse(file(historyGeneration: 1, historyShare: 100), file: "versions.json").history.count == 1)
        #expect(throws: ConfigError.self) { try VersionsConfig.parse(file(historyGeneration: 2, historyShare: 100), file: "versions.json") }
        #expect(throws: ConfigError.self) { try VersionsConfig.parse(file(historyGeneration: 1, historyShare: 90), file: "versions.json") }
    }
}
