import ArgumentParser
import Logging
import SwitchyardDeploy
import SwitchyardIO
import SwitchyardRouting
import SwitchyardProxy
import SwitchyardTLS

@main
struct Switchyard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "A weighted traffic-routing reverse proxy for several versions of one service.",
        version: BuildInfo.version,
        subcommands: [Serve.self, Check.self, Status.self, Deploy.self, Revert.self, History.self, Upgrade.self, DemoBackendCommand.self, Versions.self],
        defaultSubcommand: Serve.self
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The main config file; the paths in it are relative to it.")
    var config = "config/switchyard.json"
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy.")

    @OptionGroup var options: ConfigOption

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchyard")
        do {
            let loader = try ConfigLoader(configPath: options.config)
            try Server.run(loader: loader, logger: logger)
        } catch {
            var standardError = StandardError()
            print("switchyard: \(error)", to: &standardError)
            throw ExitCode.failure
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the config, versions and tokens files; print a summary or the first error.")

    @OptionGroup var options: ConfigOption

    @Option(name: .customLong("versions"), help: ArgumentHelp(
        "Check only this candidate versions file, as the proxy would read it (with the config's defaults when there is one).",
        valueName: "file"))
    var candidate: String?

    func run() throws {
        if let candidate { return try checkCandidate(candidate) }
        do {
            let loader = try ConfigLoader(configPath: options.config)
            let (versions, _) = try loader.loadVersions()
            let resolution = try loader.resolve(versions)
            var upstreamFiles = UpstreamFiles(versionsPath: loader.versionsPath)
            try upstreamFiles.load(versions)
            let tokens = try loader.loadTokens()
            let server = loader.server
            print("config:   \(options.config) ok")
            print("listen:   \(server.listeners.map(\.address.description).joined(separator: ", ")); admin \(server.admin)")
            print("auth:     \(tokens.map { "\($0.tokens.count) token(s) from \(loader.tokensPath ?? "")" } ?? "disabled")")
            print("service:  \(versions.service) (\(loader.versionsPath))")
            Self.describe(versions, files: upstreamFiles)
            for (index, listener) in server.listeners.enumerated() {
                guard let tls = listener.tls else { continue }
                let context: TLSServerContext
                do {
                    context = try TLSServerContext(
                        certificates: tls.certificates.map { .init(certFile: loader.path($0.certFile), keyFile: loader.path($0.keyFile)) },
                        minimumTLS13: tls.minimumTLS13, alpn: tls.alpn)
                } catch {
                    throw LoadError("\(options.config): listeners[\(index)].tls: \(error)")
                }
                print("tls:      \(listener.address): TLS \(tls.minimumTLS13 ? "1.3" : "1.2")+, ALPN \(tls.alpn.joined(separator: ","))")
                for certificate in context.loaded {
                    print("  \(certificate.certFile): \(certificate.subject), names \(certificate.names.joined(separator: ", ")), expires in \(certificate.secondsLeft / 86400) days")
                }
            }
            print("log:      \(server.accessLog.map { "access log to \($0.path == "-" ? "stdout" : loader.path($0.path))" } ?? "no access log")")
            for endpoint in resolution.unresolved {
                print("warning:  \(endpoint) (left out)")
            }
        } catch {
            var standardError = StandardError()
            print("switchyard check: \(error)", to: &standardError)
            throw ExitCode.failure
        }
    }
}

extension Check {
    /// `check --versions FILE`: the file on its own, exit 2 when it is invalid.
    func checkCandidate(_ path: String) throws {
        try runWriting("check") {
            let target = try VersionsTarget(configPath: options.config, versionsFile: path)
            let bytes: [UInt8]
            do {
                bytes = try FileIO.readAll(path)
            } catch {
                throw DeployError(.invalid, "\(path): cannot read (\(error))")
            }
            let document = try VersionsDocument(parsing: bytes, file: path)
            let versions: VersionsConfig
            do {
                if let loader = target.loader {
                    versions = try loader.validateVersions(bytes, file: path)
                } else {
                    versions = try VersionsConfig.parse(bytes, file: path)
                }
            } catch {
                throw DeployError(.invalid, "\(error)")
            }
            print("versions: \(path) ok (service \(versions.service), generation \(document.generation)\(target.loader == nil ? "; no config file, default health checks" : ""))")
            var files = UpstreamFiles(versionsPath: path)
            _ = try? files.load(versions)
            Self.describe(versions, files: files)
        }
    }

    /// One entry per version: its share, endpoints, TLS, token and health check.
    static func describe(_ versions: VersionsConfig, files upstreamFiles: UpstreamFiles) {
        for version in versions.versions {
            let share = version.trafficBasisPoints == 0 ? "0% (dark: pinned traffic only)" : "\(version.trafficPercentText)%"
            let scheme = version.tls == nil ? "" : "https://"
            print("  \(version.name): \(share) -> \(version.endpoints.map { scheme + $0.description }.joined(separator: ", "))")
            if let tls = version.tls {
                let trust = tls.insecureSkipVerify ? "certificates NOT verified (insecure_skip_verify)"
                    : "certificates verified against \(tls.caFile.map(upstreamFiles.path) ?? "the system's CAs")"
                print("    TLS to backends: \(trust)\(tls.serverName.map { ", server name \($0)" } ?? "")")
            }
            if let file = version.upstreamTokenFile {
                print("    backends get the token in \(upstreamFiles.path(file)), not the client's")
            }
            let health = version.healthCheck.map {
                "GET \($0.path) every \($0.intervalMs) ms, unhealthy after \($0.unhealthyThreshold) failures"
            } ?? "no health check"
            print("    \(health); on_unhealthy \(version.onUnhealthy.description)\(version.retryOtherVersion ? "; retry_other_version" : "")")
        }
    }
}

struct Versions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "library-versions", abstract: "Print the versions of the C libraries Switchyard is linked with.")

    func run() {
        for (name, version) in LinkedLibraries.versions { print("\(name) \(version)") }
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

import Glibc
