import ArgumentParser
import SwitchyardDeploy
import SwitchyardIO
import SwitchyardProxy
import SwitchyardRouting

/// `switchyard deploy`: Anyscale's `service deploy` for the versions file. The split in
/// `--versions`, the versions' Ray Serve applications and endpoints in `-f` files; Ray's
/// applications are deployed first, and the weights move only when they are RUNNING.
struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Change the versions and their traffic split, as `anyscale service deploy --versions` does.",
        discussion: """
            switchyard deploy --versions '[{"name":"v1","traffic_percent":90},{"name":"v2","traffic_percent":10}]' -f config_v2.yaml
            Exit status: 0 written, 1 a deploy to Ray failed (nothing written), 2 invalid input (nothing written), \
            3 the versions file changed since it was read (run again).
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: ArgumentHelp("The traffic split: a JSON array of {\"name\", \"traffic_percent\"}, or @FILE.", valueName: "json"))
    var versions: String?

    @Option(name: [.customShort("f"), .customLong("config-file")],
            help: ArgumentHelp("A version's service config YAML (repeatable).", valueName: "file"))
    var configFiles: [String] = []

    @Option(name: [.customShort("n"), .long], help: "The service; must be the versions file's.")
    var name: String?

    @Option(name: .customLong("endpoint"), help: ArgumentHelp("A version's HTTP endpoint (repeatable).", valueName: "name=host:port"))
    var endpoints: [String] = []

    @Option(name: .customLong("grpc-endpoint"), help: ArgumentHelp("A version's gRPC endpoint (repeatable).", valueName: "name=host:port"))
    var grpcEndpoints: [String] = []

    @Option(help: "Accepted as Anyscale does, and ignored: --versions sets every share.")
    var canaryPercent: Double?

    @Option(help: "Seconds the Ray Serve applications may take to reach RUNNING.")
    var rayTimeout = 600

    @OptionGroup var write: WriteOptions

    func run() throws {
        try runWriting("deploy") {
            var standardError = StandardError()
            if canaryPercent != nil {
                print("switchyard deploy: warning: --canary-percent is ignored; --versions sets every version's share", to: &standardError)
            }
            var request = DeployRequest(traffic: try versions.map(Self.traffic), service: name)
            let files = try configFiles.map(Self.serviceConfig)
            for file in files {
                if !file.ignored.isEmpty {
                    print("\(file.path): note: ignoring \(file.ignored.joined(separator: ", ")) (Anyscale cluster settings; the cluster is already running)", to: &standardError)
                }
                if request.described.contains(file.versionName) {
                    throw DeployError(.invalid, "two -f files describe version \"\(file.versionName)\"; give each version one file")
                }
                request.described.append(file.versionName)
                if let endpoints = file.endpoints { request.endpoints[file.versionName] = endpoints }
                if let endpoints = file.grpcEndpoints { request.grpcEndpoints[file.versionName] = endpoints }
            }
            try Self.addFlags(endpoints, flag: "--endpoint", to: &request.endpoints)
            try Self.addFlags(grpcEndpoints, flag: "--grpc-endpoint", to: &request.grpcEndpoints)
            if request.traffic == nil && files.isEmpty && request.endpoints.isEmpty && request.grpcEndpoints.isEmpty {
                throw DeployError(.invalid, "nothing to deploy: give --versions, -f FILE or --endpoint NAME=HOST:PORT")
            }

            if write.admin != nil {
                if request.service == nil { request.service = files.compactMap(\.service).first }
                for file in files {
                    guard let ray = RayServeDeploy(file, timeoutSeconds: rayTimeout) else { continue }
                    try ray.run { line in print(line, to: &standardError) }
                }
                try write.sendToAdmin("/v1/deploy", body: request.body, configPath: options.config)
                return
            }
            let target = try VersionsTarget(configPath: options.config, versionsFile: write.versionsFile)
            let store = try VersionsStore.read(target.path)
            let service = try Self.service(named: name, files: files, document: store.document)
            let current = store.document ?? VersionsDocument(service: service)
            if service != current.service {
                throw DeployError(.invalid, "the config files are for service \"\(service)\", the versions file \(target.path) for \"\(current.service)\"")
            }
            // A file the proxy rejects (hand-edited) is replaced, but not kept in history: a
            // revert to it would fail the same way.
            let currentIsValid = store.bytes.map { bytes in (try? VersionsConfig.parse(bytes, file: target.path)) != nil } ?? false
            if store.bytes != nil && !currentIsValid {
                print("switchyard deploy: note: \(target.path) is not valid now (see switchyard check); it is replaced and not kept in history", to: &standardError)
            }
            let (next, summary) = try current.deploying(
                request, by: Author(actor: VersionsTarget.actor, command: VersionsTarget.command), recordingCurrent: currentIsValid)
            _ = try target.validate(next)
            if !write.dryRun && !write.stdout {
                for file in files {
                    guard let ray = RayServeDeploy(file, timeoutSeconds: rayTimeout) else { continue }
                    try ray.run { line in print(line, to: &standardError) }
                }
            }
            if summary.isEmpty && store.document != nil {
                print("\(next.service): no change to the versions file (generation \(current.generation), \(target.path))")
                return
            }
            try target.write(next, over: store, summary: summary, options: write)
        }
    }

    /// `--versions` as given, or the file after `@`.
    static func traffic(_ argument: String) throws -> TrafficRequest {
        guard argument.hasPrefix("@") else { return try TrafficRequest.parse(Array(argument.utf8), source: "--versions") }
        let path = String(argument.dropFirst())
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readAll(path)
        } catch {
            throw DeployError(.invalid, "--versions @\(path): cannot read (\(error))")
        }
        return try TrafficRequest.parse(bytes, source: path)
    }

    static func serviceConfig(_ path: String) throws -> ServiceConfigFile {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readAll(path)
        } catch {
            throw DeployError(.invalid, "-f \(path): cannot read (\(error))")
        }
        return try ServiceConfigFile(path: path, bytes: bytes, readFile: { try FileIO.readAll($0) })
    }

    /// `NAME=HOST:PORT` flags, by version, in the order given.
    static func addFlags(_ flags: [String], flag: String, to endpoints: inout [String: [String]]) throws {
        var given: [String: [String]] = [:]
        for value in flags {
            let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, VersionsConfig.isValidName(parts[0]), VersionsConfig.isValidEndpoint(parts[1]) else {
                throw DeployError(.invalid, "\(flag) \(value): write it NAME=HOST:PORT, e.g. \(flag) v3=10.0.3.7:8000")
            }
            given[parts[0], default: []].append(parts[1])
        }
        endpoints.merge(given) { _, flags in flags }
    }

    /// The service every source agrees on: `-n`, each YAML's `name`, the versions file.
    static func service(named name: String?, files: [ServiceConfigFile], document: VersionsDocument?) throws -> String {
        var sources: [(String, String)] = []
        if let name { sources.append(("-n", name)) }
        for file in files { if let service = file.service { sources.append((file.path, service)) } }
        if let document { sources.append(("the versions file", document.service)) }
        guard let first = sources.first else {
            throw DeployError(.invalid, "no versions file yet and no service name: give -n SERVICE")
        }
        if let other = sources.first(where: { $0.1 != first.1 }) {
            throw DeployError(.invalid, "\(first.0) names service \"\(first.1)\" but \(other.0) names \"\(other.1)\"; they must be the same")
        }
        return first.1
    }
}
