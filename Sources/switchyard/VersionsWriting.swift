import ArgumentParser
import Glibc
import SwitchyardDeploy
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
            if let loader { return try loader.validateVersions(document.bytes, file: path).config }
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
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        return "\(user.isEmpty ? "uid\(geteuid())" : user)@\(String(cString: host))"
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
