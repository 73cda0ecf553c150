import Glibc
import Testing
@testable import SwitchyardDeploy
@testable import SwitchyardRouting

private func config(_ text: String, files: [String: String] = [:]) throws(DeployError) -> ServiceConfigFile {
    try ServiceConfigFile(path: "/etc/svc/config_v3.yaml", bytes: Array(text.utf8)) { path in
        guard let content = files[path] else { throw DeployError(.failed, "no such file") }
        return Array(content.utf8)
    }
}

@Suite struct ServiceConfigFileTests {
    @Test func readsAnyscalesFieldsOursAndTheServeConfig() throws {
        let file = try config("""
            name: test_service
            version_name: v3
            image_uri: anyscale/ray:2.9.0
            applications:
              - name: app1
                import_path: main:app
                route_prefix: /
                deployments: [{name: Model, num_replicas: 2, ray_actor_options: {num_cpus: 0.5}, user_config: {flag: true, none: null}}]
            http_options: {port: 8000}
            endpoints: ["10.0.3.7:8000"]
            grpc_endpoints: ["10.0.3.7:9000"]
            ray_dashboard: {address: "http://10.0.3.7:8265/", token_file: ray-token}
            """, files: ["/etc/svc/ray-token": "secret\n"])
        #expect(file.service == "test_service")
        #expect(file.versionName == "v3" && !file.derivedName)
        #expect(file.ignored == ["image_uri"])
        #expect(file.endpoints == ["10.0.3.7:8000"] && file.grpcEndpoints == ["10.0.3.7:9000"])
        #expect(file.applications == ["app1"])
        #expect(file.rayDashboard?.address == Endpoint(host: "10.0.3.7", port: 8265))
        #expect(file.rayDashboard?.token == "secret")
        #expect(file.serveConfig?.compactText == """
            {"applications": [{"name": "app1", "import_path": "main:app", "route_prefix": "/", "deployments": [{"name": "Model", \
            "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}, "user_config": {"flag": true, "none": null}}]}], \
            "http_options": {"port": 8000}}
            """)
    }

    @Test func aNameIsDerivedFromTheContentTheSameEachTime() throws {
        let text = "name: test_service\nendpoints: [\"127.0.0.1:8003\"]\n"
        let first = try config(text), second = try config(text)
        #expect(first.derivedName)
        #expect(first.versionName == second.versionName)
        #expect(first.versionName.utf8.count == 12 && first.versionName.hasPrefix("v-"))
        #expect(first.versionName.dropFirst(2).allSatisfy { $0.isLowercase || $0.isNumber })
        #expect(try config(text + "# another\n").versionName != first.versionName)
    }

    @Test(arguments: [
        ("name: s\nendpoint: [\"h:1\"]\n", "unknown field \"endpoint\" (did you mean \"endpoints\"?)"),
        ("name: s\nendpoints: [\"nonsense\"]\n", "is not a \"host:port\" address"),
        ("name: s\napplications: [{import_path: a:b}]\n", "add ray_dashboard"),
        ("name: s\nhttp_options: {port: 1}\n", "http_options is given without applications"),
        ("name: s\nversion_name: \"bad name\"\n", "version_name \"bad name\" is invalid"),
        ("- just\n- a list\n", "the file must be a YAML mapping"),
        ("name: s\nray_dashboard: {address: \"https://h:8265\"}\n", "only http:// is supported"),
    ])
    func mistakesAreNamedWithTheirPlace(text: String, expected: String) {
        do {
            _ = try config(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains(expected), "\(error)")
            #expect(error.description.hasPrefix("/etc/svc/config_v3.yaml"))
            #expect(error.kind == .invalid)
        }
    }

    @Test func deeplyNestedYAMLIsAnErrorNotACrash() {
        let nested = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: DeployError.self) { try config("name: s\napplications: [{x: \(nested)}]\nray_dashboard: {address: \"h:1\"}\n") }
    }
}

@Suite struct DeployBodyTests {
    @Test func theAdminBodyReadsBackAsTheRequest() throws {
        var request = DeployRequest(traffic: try TrafficRequest.parse(Array(#"[{"name":"v1","traffic_percent":12.5},{"name":"v3","traffic_percent":87.5}]"#.utf8), source: "--versions"), service: "demo")
        request.endpoints = ["v3": ["127.0.0.1:8003"]]
        let read = try DeployRequest(body: request.body)
        #expect(read.traffic == request.traffic)
        #expect(read.service == "demo")
        #expect(read.endpoints == request.endpoints)
    }

    @Test func unknownFieldsAndBadEndpointsAreRefused() {
        #expect(throws: DeployError.self) { try DeployRequest(body: Array(#"{"versions": [{"name":"v1","traffic_percent":100}], "weights": 1}"#.utf8)) }
        #expect(throws: DeployError.self) { try DeployRequest(body: Array(#"{"endpoints": {"v1": ["nope"]}}"#.utf8)) }
        #expect(throws: DeployError.self) { try DeployRequest(body: Array("{}".utf8)) }
    }
}

@Suite struct VersionsStoreTests {
    private func temporaryDirectory() -> String {
        var template = Array("/tmp/sy-store-XXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    private func write(_ text: String, to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }

    private let initial = #"{"service": "demo", "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": ["127.0.0.1:1"]}]}"#

    @Test func aWriteReplacesTheFileAndAnEditSinceTheReadIsAConflict() throws {
        let directory = temporaryDirectory()
        let path = "\(directory)/versions.json"
        write(initial, to: path)
        let author = Author(actor: "t@h", command: "test")
        let store = try VersionsStore.read(path)
        let (next, _) = try store.document!.deploying(DeployRequest(), by: author)
        try store.commit(next)
        #expect(try VersionsStore.read(path).bytes == next.bytes)

        // A hand edit that keeps the generation is seen by its bytes.
        let stale = try VersionsStore.read(path)
        write(String(decoding: next.bytes, as: UTF8.self).replacing("127.0.0.1:1", with: "127.0.0.1:2"), to: path)
        let (again, _) = try stale.document!.deploying(DeployRequest(), by: author)
        do {
            try stale.commit(again)
            Issue.record("a stale write went through")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.description.contains("generation 1 → 1, edited by hand"), "\(error)")
        }
        #expect(try VersionsStore.read(path).document?.versions.first?.compactText.contains("127.0.0.1:2") == true)
    }

    @Test func aSymbolicLinkIsNotReplaced() throws {
        let directory = temporaryDirectory()
        write(initial, to: "\(directory)/real.json")
        symlink("\(directory)/real.json", "\(directory)/versions.json")
        #expect(throws: DeployError.self) { try VersionsStore.read("\(directory)/versions.json") }
    }

    @Test func aMissingFileReadsAsNoDocument() throws {
        let store = try VersionsStore.read("\(temporaryDirectory())/versions.json")
        #expect(store.bytes == nil && store.document == nil)
    }
}
