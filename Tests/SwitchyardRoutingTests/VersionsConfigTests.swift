import Testing
@testable import SwitchyardRouting

func parseVersions(_ text: String) throws(ConfigError) -> VersionsConfig {
    try VersionsConfig.parse(Array(text.utf8), file: "versions.json")
}

func versionsError(_ text: String) -> ConfigError? {
    do {
        _ = try parseVersions(text)
        return nil
    } catch {
        return error
    }
}

@Suite struct VersionsConfigTests {
    @Test func parsesTheExample() throws {
        let config = try parseVersions("""
            {"service": "demo",
             "versions": [
               {"name": "v1", "traffic_percent": 30, "endpoints": ["127.0.0.1:8001"]},
               {"name": "v2", "traffic_percent": 70, "endpoints": ["127.0.0.1:8002", "[::1]:8003", "ray-head:8000"]}]}
            """)
        #expect(config.service == "demo")
        #expect(config.versions.map(\.name) == ["v1", "v2"])
        #expect(config.versions.map(\.trafficBasisPoints) == [3000, 7000])
        #expect(config.versions[1].endpoints == [
            Endpoint(host: "127.0.0.1", port: 8002), Endpoint(host: "::1", port: 8003), Endpoint(host: "ray-head", port: 8000),
        ])
    }

    @Test func percentagesAreExactHundredths() throws {
        let config = try parseVersions("""
            {"service": "s", "versions": [
              {"name": "a", "traffic_percent": 33.33, "endpoints": ["h:1"]},
              {"name": "b", "traffic_percent": 33.33, "endpoints": ["h:2"]},
              {"name": "c", "traffic_percent": 33.34, "endpoints": ["h:3"]},
              {"name": "dark", "traffic_percent": 0, "endpoints": ["h:4"]}]}
            """)
        #expect(config.versions.map(\.trafficBasisPoints) == [3333, 3333, 3334, 0])
        #expect(config.versions.map(\.trafficPercentText) == ["33.33", "33.33", "33.34", "0"])
    }

    @Test func errorsNameTheirPlace() {
        let sum = versionsError("""
            {"service": "demo",
             "versions": [
               {"name": "v1", "traffic_percent": 30, "endpoints": ["127.0.0.1:8001"]},
               {"name": "v2", "traffic_percent": 60, "endpoints": ["127.0.0.1:8002"]}]}
            """)
        #expect(sum?.description == "versions.json:2:14: traffic_percent values sum to 90, they must sum to 100 (v2: 70 instead of 60 would do)")

        let typo = versionsError("""
            {"service": "demo",
             "versions": [{"name": "v1", "traffic_percnt": 100, "endpoints": ["h:1"]}]}
            """)
        #expect(typo?.description.hasPrefix("versions.json:2:") == true)
        #expect(typo?.message.contains("did you mean \"traffic_percent\" instead of \"traffic_percnt\"") == true)
    }

    @Test(arguments: [
        (#"{"service":"s","versions":[]}"#, "there must be 1 to 10"),
        (#"{"service":"s","versions":[{"name":"a b","traffic_percent":100,"endpoints":["h:1"]}]}"#, "invalid"),
        (#"{"service":"s","versions":[{"name":"","traffic_percent":100,"endpoints":["h:1"]}]}"#, "invalid"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":50,"endpoints":["h:1"]},{"name":"a","traffic_percent":50,"endpoints":["h:1"]}]}"#, "used twice"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100.001,"endpoints":["h:1"]}]}"#, "at most two decimals"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":-1,"endpoints":["h:1"]}]}"#, "from 0 to 100"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":101,"endpoints":["h:1"]}]}"#, "from 0 to 100"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":"100","endpoints":["h:1"]}]}"#, "must be a number"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":1e2,"endpoints":["h:1"]}]}"#, "exponent"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100,"endpoints":[]}]}"#, "no endpoints"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100,"endpoints":["h"]}]}"#, "host:port"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100,"endpoints":["h:0"]}]}"#, "host:port"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100,"endpoints":["::1:80"]}]}"#, "host:port"),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100}]}"#, "needs the field \"endpoints\""),
        (#"{"versions":[{"name":"a","traffic_percent":100,"endpoints":["h:1"]}]}"#, "\"service\""),
        (#"{"service":"s","versions":[{"name":"a","traffic_percent":100,"endpoints":["h:1"],}]}"#, "trailing comma"),
        (#"{"service":"s","service":"t","versions":[]}"#, "appears twice"),
        ("", "unexpected end of file"),
    ])
    func rejects(_ text: String, _ expected: String) {
        let error = versionsError(text)
        #expect(error != nil, "accepted: \(text)")
        #expect(error?.message.contains(expected) == true, "\(error?.description ?? "nil") lacks \(expected)")
    }

    @Test func aServiceNameSaysWhatIsWrongWithIt() {
        func error(service: String) -> ConfigError? {
            versionsError(#"{"service":"\#(service)","versions":[{"name":"a","traffic_percent":100,"endpoints":["h:1"]}]}"#)
        }
        #expect(error(service: String(repeating: "a", count: 253)) == nil)
        #expect(error(service: String(repeating: "a", count: 254))?.description == "versions.json:1:12: service is 254 bytes long; it may have 253 at most")
        #expect(error(service: "")?.message == "service must not be empty")
        #expect(error(service: "a\\u0007b")?.message == "service must not contain control characters")
    }

    @Test func elevenVersionsAreTooMany() {
        let versions = (0..<11).map { #"{"name":"v\#($0)","traffic_percent":\#($0 == 0 ? 100 : 0),"endpoints":["h:1"]}"# }
        let error = versionsError(#"{"service":"s","versions":[\#(versions.joined(separator: ","))]}"#)
        #expect(error?.message.contains("has 11 entries") == true)
    }
}

@Suite struct VersionsFileFormsTests {
    @Test func anyscalesVersionsArrayIsAcceptedWithEndpoints() throws {
        let text = #"[{"name": "v1", "traffic_percent": 80, "endpoints": ["h1:8000"]}, {"name": "v2", "traffic_percent": 20, "endpoints": ["h2:8000"]}]"#
        let config = try VersionsConfig.parse(Array(text.utf8), file: "/etc/switchyard/summarizer.json")
        #expect(config.service == "summarizer")
        #expect(config.versions.map(\.trafficBasisPoints) == [8000, 2000])
    }

    @Test func everyErrorOfAFileIsReportedAtOnce() {
        // Anyscale's array as pasted: no endpoints anywhere, and a typo in the second version.
        let text = "[{\"name\": \"v1\", \"traffic_percent\": 80},\n {\"name\": \"v2\", \"traffic_percent\": 20.005}]"
        do {
            _ = try VersionsConfig.parse(Array(text.utf8), file: "versions.json")
            Issue.record("accepted versions without endpoints")
        } catch {
            let lines = error.description.split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(lines)")
            #expect(lines[0].hasPrefix("versions.json:1:2: version \"v1\" needs the field \"endpoints\""))
            #expect(lines[1].hasPrefix("versions.json:2:36: versions[1].traffic_percent is 20.005"))
            #expect(lines[2].hasPrefix("versions.json:2:2: version \"v2\" needs the field \"endpoints\""))
        }
    }

    @Test func aFileMissingBothFieldsNamesBoth() {
        do {
            _ = try VersionsConfig.parse(Array("{}".utf8), file: "versions.json")
            Issue.record("accepted an empty object")
        } catch {
            #expect(error.description.contains("needs the field \"service\""))
            #expect(error.description.contains("needs the field \"versions\""))
        }
    }

    @Test func aFileThatIsNeitherSaysWhatIsExpected() {
        do {
            _ = try VersionsConfig.parse(Array("\"v1\"".utf8), file: "versions.json")
            Issue.record("accepted a string")
        } catch {
            #expect(error.description.contains("must be an object {\"service\""))
            #expect(error.description.contains("or the versions array"))
        }
    }
}

@Suite struct ServerConfigTests {
    func parse(_ text: String) throws(ConfigError) -> ServerConfig {
        try ServerConfig.parse(Array(text.utf8), file: "switchyard.json")
    }

    @Test func defaultsAndOverrides() throws {
        let config = try parse(#"{"auth": {"tokens_file": "tokens.txt"}, "workers": 3, "timeouts": {"connect_ms": 50}}"#)
        #expect(config.workers == 3)
        #expect(config.timeouts.connectMs == 50)
        #expect(config.timeouts.idleMs == 60000)
        #expect(config.limits.maxHeadBytes == 65536)
        #expect(config.listeners.map(\.address.description) == ["127.0.0.1:8080"])
        #expect(config.auth.forwardAuthorization == false)
    }

    @Test func refusesToRunWithoutTokensUnlessDisabled() throws {
        #expect(throws: ConfigError.self) { try parse("{}") }
        let open = try parse(#"{"auth": {"disabled": true}}"#)
        #expect(open.auth.disabled)
    }

    @Test func unknownAndBadFieldsFailWithTheirPlace() {
        #expect(throws: ConfigError.self) { try parse(#"{"auth": {"disabled": true}, "limits": {"max_head_byte": 1}}"#) }
        do {
            _ = try parse("{\"auth\": {\"disabled\": true},\n \"workers\": -1}")
            Issue.record("negative workers accepted")
        } catch {
            #expect(error.description == "switchyard.json:2:13: workers is -1, it must be from 0 to 1024")
        }
        #expect(throws: ConfigError.self) {
            try parse(#"{"auth": {"disabled": true}, "listeners": [{"address": "127.0.0.1:9901"}]}"#)
        }
    }

    @Test func tlsListenersAndTheOtherOperationsSettings() throws {
        let config = try parse("""
            {"auth": {"disabled": true},
             "listeners": [{"address": "127.0.0.1:8443", "tls": {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}],
                                                              "min_version": "1.3"}}],
             "timeouts": {"tls_handshake_ms": 500},
             "access_log": {"path": "-", "sample_percent": 5}, "health_check": false, "retry_other_version": true}
            """)
        let tls = try #require(config.listeners[0].tls)
        #expect(tls.certificates == [.init(certFile: "a.pem", keyFile: "a.key")] && tls.minimumTLS13 && tls.alpn == ["h2", "http/1.1"])
        #expect(config.timeouts.tlsHandshakeMs == 500)
        #expect(config.accessLog == .init(path: "-", samplePercent: 5, query: false))
        #expect(config.versionDefaults.healthCheck == nil && config.versionDefaults.retryOtherVersion)
        #expect(try parse(#"{"auth": {"disabled": true}}"#).accessLog == nil, "no access log unless asked")
    }

    @Test(arguments: [
        (#""tls": {"certificates": []}"#, "must be a non-empty array"),
        (#""tls": {"certificates": [{"cert_file": "a.pem"}]}"#, "needs \"cert_file\" and \"key_file\""),
        (#""tls": {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}], "alpn": ["h3"]}"#, "may list \"h2\" and \"http/1.1\""),
        (#""tls": {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}], "alpn": ["h2", "h2"]}"#, "lists \"h2\" twice"),
        (#""tls": {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}], "min_version": "1.0"}"#, "must be \"1.2\" or \"1.3\""),
    ])
    func tlsMistakesAreNamed(fields: String, expected: String) {
        #expect {
            _ = try parse(#"{"auth": {"disabled": true}, "listeners": [{"address": "127.0.0.1:8443", "# + fields + "}]}")
        } throws: { error in
            "\(error)".contains(expected) && "\(error)".hasPrefix("switchyard.json:")
        }
    }
}

@Suite struct HTTP2ConfigTests {
    private func parse(_ text: String) throws(ConfigError) -> ServerConfig {
        try ServerConfig.parse(Array(text.utf8), file: "switchyard.json")
    }

    @Test func defaultsAndSettings() throws {
        let defaults = try parse(#"{"auth": {"disabled": true}}"#).http2
        #expect(defaults.enabled && defaults.maxConcurrentStreams == 100 && defaults.maxHeaderListBytes == 65536)
        #expect(defaults.resetBurst == 200 && defaults.resetsPerSecond == 33 && defaults.maxContinuations == 8)
        let config = try parse("""
            {"auth": {"disabled": true},
             "http2": {"max_concurrent_streams": 10, "max_header_list_bytes": 4096, "stream_window_bytes": 16384,
                       "reset_burst": 5, "resets_per_second": 1, "max_continuations": 2, "header_table_bytes": 0}}
            """).http2
        #expect(config.maxConcurrentStreams == 10 && config.maxHeaderListBytes == 4096 && config.streamWindowBytes == 16384)
        #expect(config.resetBurst == 5 && config.resetsPerSecond == 1 && config.maxContinuations == 2 && config.headerTableBytes == 0)
    }

    @Test func disabledHTTP2LeavesH2OutOfALPN() throws {
        let tls = #"{"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}]}"#
        let config = try parse(#"{"auth": {"disabled": true}, "http2": {"enabled": false}, "listeners": [{"address": "127.0.0.1:1", "tls": "# + tls + "}]}")
        #expect(config.listeners[0].tls?.alpn == ["http/1.1"])
        let offered = #"{"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}], "alpn": ["h2"]}"#
        #expect {
            _ = try parse(#"{"auth": {"disabled": true}, "http2": {"enabled": false}, "listeners": [{"address": "127.0.0.1:1", "tls": "# + offered + "}]}")
        } throws: { error in "\(error)".contains("offers h2 but http2.enabled is false") }
    }

    @Test(arguments: [
        (#"{"max_concurrent_streams": 0}"#, "http2.max_concurrent_streams"),
        (#"{"stream_window_bytes": 10}"#, "http2.stream_window_bytes"),
        (#"{"max_streams": 10}"#, "max_streams"),
    ])
    func mistakesAreNamed(http2: String, expected: String) {
        #expect {
            _ = try parse(#"{"auth": {"disabled": true}, "http2": "# + http2 + "}")
        } throws: { error in "\(error)".contains(expected) }
    }
}

@Suite struct HealthCheckConfigTests {
    private func parse(_ versionFields: String, defaults: VersionsConfig.Defaults = .init()) throws(ConfigError) -> VersionsConfig.Version {
        let text = """
            {"service": "s", "versions": [
              {"name": "v1", "traffic_percent": 100, "endpoints": ["127.0.0.1:1"]\(versionFields)},
              {"name": "stable", "traffic_percent": 0, "endpoints": ["127.0.0.1:2"]}]}
            """
        return try VersionsConfig.parse(Array(text.utf8), file: "versions.json", defaults: defaults).versions[0]
    }

    @Test func defaultsSuitRayServe() throws {
        let version = try parse("")
        #expect(version.healthCheck == HealthCheck())
        #expect(version.healthCheck?.path == "/-/healthz" && version.healthCheck?.intervalMs == 2000)
        #expect(version.onUnhealthy == .redistribute)
        #expect(!version.retryOtherVersion)
    }

    @Test func aVersionOverridesFieldsOrTurnsChecksOff() throws {
        let custom = try parse(#", "health_check": {"path": "/ready", "unhealthy_threshold": 3}"#)
        #expect(custom.healthCheck?.path == "/ready" && custom.healthCheck?.unhealthyThreshold == 3 && custom.healthCheck?.intervalMs == 2000)
        #expect(try parse(#", "health_check": false"#).healthCheck == nil)
        var globalOff = VersionsConfig.Defaults()
        globalOff.healthCheck = nil
        #expect(try parse("", defaults: globalOff).healthCheck == nil)
        #expect(try parse(#", "health_check": true"#, defaults: globalOff).healthCheck == HealthCheck())
    }

    @Test func policiesParse() throws {
        #expect(try parse(#", "on_unhealthy": "fail""#).onUnhealthy == .fail)
        #expect(try parse(#", "on_unhealthy": {"fallback": "stable"}"#).onUnhealthy == .fallback("stable"))
        #expect(try parse(#", "retry_other_version": true"#).retryOtherVersion)
    }

    @Test(arguments: [
        (#", "on_unhealthy": {"fallback": "v9"}"#, "not a version in this file"),
        (#", "on_unhealthy": {"fallback": "v1"}"#, "itself"),
        (#", "on_unhealthy": "drop""#, "must be \"redistribute\", \"fail\""),
        (#", "health_check": {"interval_ms": 500, "timeout_ms": 1000}"#, "must not exceed interval_ms"),
        (#", "health_check": {"path": "healthz"}"#, "must start with \"/\""),
        (#", "health_check": {"intervall_ms": 500}"#, "did you mean \"interval_ms\""),
        (#", "health_check": "yes""#, "must be false (no checks), true"),
    ])
    func mistakesAreNamed(fields: String, expected: String) {
        #expect {
            _ = try parse(fields)
        } throws: { error in
            "\(error)".contains(expected) && "\(error)".contains("versions.json:")
        }
    }
}

@Suite struct UpstreamTLSConfigTests {
    private func version(_ endpoints: String, _ fields: String = "") throws(ConfigError) -> VersionsConfig.Version {
        let extra = fields.isEmpty ? "" : ", \(fields)"
        return try parseVersions("""
            [{"name": "v1", "traffic_percent": 100, "endpoints": [\(endpoints)]\(extra)}]
            """).versions[0]
    }

    @Test func anHTTPSEndpointMeansTLSWithTheDefaults() throws {
        let plain = try version(#""10.0.0.1:8000""#)
        #expect(plain.tls == nil)
        let secure = try version(#""https://svc.example.com", "https://[::1]:8443/""#)
        #expect(secure.tls == UpstreamTLS())
        #expect(secure.endpoints == [Endpoint(host: "svc.example.com", port: 443), Endpoint(host: "::1", port: 8443)])
        #expect(try version(#""http://ray-head""#).endpoints == [Endpoint(host: "ray-head", port: 80)])
    }

    @Test func tlsSettingsApplyToHostPortEndpoints() throws {
        let configured = try version(#""10.0.0.1:8443""#, #""tls": {"ca_file": "ca.pem", "server_name": "v1.internal"}"#)
        #expect(configured.tls == UpstreamTLS(caFile: "ca.pem", serverName: "v1.internal"))
        #expect(try version(#""10.0.0.1:8443""#, #""tls": true"#).tls == UpstreamTLS())
        #expect(try version(#""10.0.0.1:8443""#, #""tls": {"insecure_skip_verify": true}"#).tls?.insecureSkipVerify == true)
        #expect(try version(#""10.0.0.1:8000""#, #""tls": false"#).tls == nil)
    }

    @Test func anUpstreamTokenFileIsRead() throws {
        #expect(try version(#""h:1""#, #""upstream_bearer_token_file": "secrets/v1""#).upstreamTokenFile == "secrets/v1")
        #expect(try version(#""h:1""#).upstreamTokenFile == nil)
    }

    @Test(arguments: [
        (#""https://a:1", "b:2""#, "", "mixes https:// endpoints with plain ones"),
        (#""b:2", "https://a:1""#, "", "mixes https:// endpoints with plain ones"),
        (#""https://a:1""#, #""tls": false"#, #"has "tls": false but https:// endpoints"#),
        (#""http://a:1""#, #""tls": true"#, #"has "tls" settings but http:// endpoints"#),
        (#""a:1""#, #""tls": "yes""#, "must be true (verify against the system's CAs), false, or an object"),
        (#""a:1""#, #""tls": {"ca_file": ""}"#, "ca_file must be a path"),
        (#""a:1""#, #""tls": {"server_name": "a b"}"#, "is not a host name"),
        (#""a:1""#, #""tls": {"insecure_skip_verify": true, "ca_file": "c"}"#, "ca_file has no effect"),
        (#""a:1""#, #""tls": {"verify": false}"#, "unknown field \"verify\""),
        (#""https://""#, "", "endpoint must be a string"),
        (#""https://a:0""#, "", "endpoint must be a string"),
        (#""ftp://a:1""#, "", "endpoint must be a string"),
        (#""a:1""#, #""upstream_bearer_token_file": """#, "upstream_bearer_token_file must be a path"),
        (#""a:1""#, #""upstream_bearer_token_file": 7"#, "must be a string"),
    ])
    func mistakesAreNamed(endpoints: String, fields: String, expected: String) {
        let extra = fields.isEmpty ? "" : ", \(fields)"
        let error = versionsError("""
            [{"name": "v1", "traffic_percent": 100, "endpoints": [\(endpoints)]\(extra)}]
            """)
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }
}

@Suite struct GRPCEndpointsConfigTests {
    private func version(_ fields: String) throws(ConfigError) -> VersionsConfig.Version {
        try parseVersions("""
            [{"name": "v1", "traffic_percent": 100, "endpoints": ["10.0.0.1:8000"], \(fields)}]
            """).versions[0]
    }

    @Test func grpcEndpointsAreReadNextToTheHTTPOnes() throws {
        let parsed = try version(#""grpc_endpoints": ["10.0.0.1:9000", "http://ray-head:9000", "[::1]:9001"]"#)
        #expect(parsed.grpcEndpoints == [Endpoint(host: "10.0.0.1", port: 9000), Endpoint(host: "ray-head", port: 9000),
                                         Endpoint(host: "::1", port: 9001)])
        #expect(parsed.endpoints == [Endpoint(host: "10.0.0.1", port: 8000)])
        #expect(try parseVersions(#"[{"name": "v1", "traffic_percent": 100, "endpoints": ["h:1"]}]"#).versions[0].grpcEndpoints.isEmpty)
    }

    @Test(arguments: [
        (#""grpc_endpoints": []"#, "must be a non-empty array"),
        (#""grpc_endpoints": "h:9000""#, "must be a non-empty array"),
        (#""grpc_endpoints": ["h"]"#, "a gRPC endpoint must be a string"),
        (#""grpc_endpoints": [9000]"#, "a gRPC endpoint must be a string"),
        (#""grpc_endpoints": ["https://h:9000"]"#, "TLS to gRPC endpoints is not supported"),
        (#""grpc_endpoints": ["h:9000", "h:9000"]"#, "listed twice"),
    ])
    func mistakesAreNamed(fields: String, expected: String) {
        let error = versionsError("""
            [{"name": "v1", "traffic_percent": 100, "endpoints": ["a:1"], \(fields)}]
            """)
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        #expect(error?.description.contains("versions.json:1:") == true, "\(String(describing: error))")
    }
}
