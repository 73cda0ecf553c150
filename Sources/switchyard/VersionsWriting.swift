import ArgumentParser
import Glibc
import SwitchyardDeploy
import SwitchyardIO
import SwitchyardProxy
import SwitchyardRouting

/// Where `deploy` and `revert` write, and how they check what they write.
struct WriteOptions: ParsableArguments {
    @Option(help: "Read and write this versions file instead of the config's versions_file.")
    var versionsFile: String?

    @Flag(help: "Print the resulting versions file to standard output and write nothing (for a Kubernetes ConfigMap).")
    var stdout = false

    @Flag(help: "Print the change and write nothing.")
    var dryRun = false

    @Option(help: ArgumentHelp("Have the proxy whose admin API is at HOST:PORT write the change (POST /v1/deploy, /v1/revert).", valueName: "host:port"))
    var admin: String?

    @Option(help: "The admin API's write token (default: the config's admin.write_token_file).")
    var adminTokenFile: String?

    /// Sends `body` to the admin API's `path` and prints what it did.
    func sendToAdmin(_ path: String, body: [UInt8], configPath: String) throws {
        guard let admin else { return }
        if dryRun || stdout || versionsFile != nil {
            throw DeployError(.invalid, "--admin writes through the proxy; it does not go with --dry-run, --stdout or --versions-file")
        }
        guard let endpoint = Endpoint(parsing: admin.hasPrefix("http://") ? String(admin.dropFirst(7)) : admin) else {
            throw DeployError(.invalid, "--admin \(admin): give the admin API's host:port, e.g. 127.0.0.1:9901")
        }
        let loader = try? ConfigLoader(configPath: configPath)
        guard let tokenFile = adminTokenFile ?? loader?.server.adminWriteTokenFile.map({ loader!.path($0) }) else {
            throw DeployError(.invalid, "--admin needs the write token: give --admin-token-file FILE (or run where the config sets admin.write_token_file)")
        }
        let token: String
        do {
            token = String(decoding: try FileIO.readAll(tokenFile), as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
        } catch {
            throw DeployError(.invalid, "\(tokenFile): cannot read the write token (\(error))")
        }
        let response: HTTPClient.Response
        do {
            response = try HTTPClient.send("POST", path, to: endpoint, headers: [("Authorization", "Bearer \(token)")], body: body, timeoutMs: 10_000)
        } catch {
            throw DeployError(.failed, "the admin API at \(endpoint): \(error)")
        }
        let answer = try? JSONParser.parse(response.body, file: "POST \(path)")
        guard response.status == 200, let answer else {
            let message = answer?[member: "error"]?[member: "message"].flatMap { node -> String? in
                if case .string(let text) = node.value { return text }
                return nil
            } ?? response.text
            let kind: DeployError.Kind = response.status == 400 || response.status == 404 ? .invalid : response.status == 409 ? .conflict : .failed
            throw DeployError(kind, "the admin API at \(endpoint) answered \(response.status): \(message)")
        }
        func number(_ key: String) -> String {
            if case .number(let text)? = answer[member: key]?.value { return text }
            return "?"
        }
        let service = answer[member: "service"].flatMap { node -> String? in
            if case .string(let text) = node.value { return text }
            return nil
        } ?? "?"
        print("\(service): generation \(number("previous_generation")) → \(number("generation")) (written by the proxy at \(endpoint))")
        for case .string(let line) in (answer[member: "changes"].map { node -> [JSONNode.Value] in
            if case .array(let elements) = node.value { return elements.map(\.value) }
            return []
        } ?? []) {
            print("  \(line)")
        }
    }
}

/// The versions file a writer edits, with the config that says how the proxy will read it.
struct VersionsTarget {
    /// nil when there is no config file and --versions-file names the file.
    let loader: ConfigLoader?
    let path: String
    let auditLog: String?

    init(configPath: String, versionsFile: String?) throws(DeployError) {
        var loader: ConfigLoader?
        do {
            loader = try ConfigLoader(configPath: configPath)
        } catch {
            // A versions file of its own can be written without a config (CI, a ConfigMap).
            var status = stat()
            guard versionsFile != nil, stat(configPath, &status) != 0 else { throw DeployError(.invalid, error.description) }
        }
        self.loader = loader
        guard let path = versionsFile ?? loader?.versionsPath else {
            throw DeployError(.invalid, "no versions file: run where config/switchyard.json is, give --config PATH, or --versions-file PATH")
        }
        self.path = path
        self.auditLog = loader?.server.auditLog.map { loader!.path($0) }
    }

    /// Checks `document` as the proxy will read it (the code of `switchyard check`).
    func validate(_ document: VersionsDocument) throws(DeployError) -> VersionsConfig {
        do {
            if let loader { return try loader.validateVersions(document.bytes, file: path) }
            return try VersionsConfig.parse(document.bytes, file: path)
        } catch {
            throw DeployError(.invalid, "the result would not be a valid versions file, so nothing was written:\n\(error)")
        }
    }

    /// Writes `next` over `store` (or prints it), then says what changed.
    func write(_ next: VersionsDocument, over store: VersionsStore, summary: EditSummary, options: WriteOptions) throws(DeployError) {
        var standardError = StandardError()
        let header = "\(next.service): generation \(store.document?.generation ?? 0) → \(next.generation) (\(path))"
        if options.dryRun {
            print(header + ", not written (dry run)")
            for line in summary.text { print("  \(line)") }
            return
        }
        if options.stdout {
            print(next.text, terminator: "")
            print(header + ", printed, not written", to: &standardError)
            for line in summary.text { print("  \(line)", to: &standardError) }
            return
        }
        try store.commit(next, wait: .blocking, audit: auditLog)
        print(header)
        for line in summary.text { print("  \(line)") }
    }

    /// `ana@build-7`: who runs this command.
    static var actor: String {
        var user = getenv("USER").map { String(cString: $0) } ?? ""
        if user.isEmpty, let entry = getpwuid(geteuid()) { user = String(cString: entry.pointee.pw_name) }
        var host = [UInt8](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let name = String(decoding: host.prefix { $0 != 0 }, as: UTF8.self)
        return "\(user.isEmpty ? "uid\(geteuid())" : user)@\(name)"
    }

    /// The command line as given, quoted where a shell would need it.
    static var command: String {
        CommandLine.arguments.dropFirst().map { argument in
            let plain = argument.unicodeScalars.allSatisfy { scalar in
                scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_./=:@,%+".unicodeScalars.contains(scalar)
            }
            return plain && !argument.isEmpty ? argument : "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
        }.joined(separator: " ")
    }
}

/// Runs a writing command's body, mapping its errors to their exit status.
func runWriting(_ name: String, _ body: () throws -> Void) throws {
    var standardError = StandardError()
    do {
        try body()
    } catch let error as DeployError {
        print("switchyard \(name): \(error)", to: &standardError)
        throw ExitCode(error.exitCode)
    } catch let error as ConfigError {
        print("switchyard \(name): \(error)", to: &standardError)
        throw ExitCode(2)
    } catch let error as ExitCode {
        throw error
    } catch {
        print("switchyard \(name): \(error)", to: &standardError)
        throw ExitCode.failure
    }
}
