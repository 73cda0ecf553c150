import SwitchyardIO
import SwitchyardRouting

/// Reads the config files from disk, resolving paths relative to the main config file.
public struct ConfigLoader: Sendable {
    public let configPath: String
    public let server: ServerConfig

    /// Loads and validates the main config file.
    public init(configPath: String) throws(LoadError) {
        self.configPath = configPath
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readAll(configPath)
        } catch {
            throw LoadError("\(configPath): cannot read the config file (\(error))")
        }
        do {
            server = try ServerConfig.parse(bytes, file: configPath)
        } catch {
            throw LoadError(error.description)
        }
    }

    public var directory: String {
        guard let slash = configPath.lastIndex(of: "/") else { return "." }
        let directory = String(configPath[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// A path from the config file, made relative to the config file's directory.
    public func path(_ relative: String) -> String {
        relative.hasPrefix("/") ? relative : "\(directory)/\(relative)"
    }

    public var versionsPath: String { path(server.versionsFile) }
    public var tokensPath: String? { server.auth.disabled ? nil : server.auth.tokensFile.map(path) }

    /// Reads and validates the versions file; also returns its bytes to detect unchanged content.
    public func loadVersions() throws(LoadError) -> (config: VersionsConfig, bytes: [UInt8]) {
        let bytes = try read(versionsPath, what: "the versions file", field: "versions_file")
        let defaults = server.versionDefaults
        return (try parse({ bytes, file throws(ConfigError) in try VersionsConfig.parse(bytes, file: file, defaults: defaults) }, bytes, versionsPath), bytes)
    }

    /// Validates versions-file bytes exactly as a reload would: parsed with this config's
    /// defaults, the files they name read, every version left with an address (unless
    /// `resolving` is false: the control thread does not wait for DNS; the reload that
    /// follows resolves on the resolver thread). `file` names them in errors and anchors
    /// their relative paths.
    public func validateVersions(_ bytes: [UInt8], file: String, resolving: Bool = true) throws(LoadError) -> VersionsConfig {
        let defaults = server.versionDefaults
        let config = try parse({ bytes, file throws(ConfigError) in try VersionsConfig.parse(bytes, file: file, defaults: defaults) }, bytes, file)
        var upstreamFiles = UpstreamFiles(versionsPath: file)
        _ = try upstreamFiles.load(config)
        if resolving || !needsLookup(config) { _ = try resolve(config, file: file) }
        return config
    }

    /// Reads the tokens file; nil when authentication is disabled.
    public func loadTokens() throws(LoadError) -> (tokens: TokenSet, bytes: [UInt8])? {
        guard let path = tokensPath else { return nil }
        let bytes = try read(path, what: "the tokens file", field: "auth.tokens_file")
        return (try parse(TokenSet.parse, bytes, path), bytes)
    }

    private func read(_ path: String, what: String, field: String) throws(LoadError) -> [UInt8] {
        do {
            return try FileIO.readAll(path)
        } catch {
            throw LoadError("\(path): cannot read \(what) (\(error)); \(field) is relative to \(configPath)")
        }
    }

    private func parse<T>(_ parser: ([UInt8], String) throws(ConfigError) -> T, _ bytes: [UInt8], _ path: String) throws(LoadError) -> T {
        do {
            return try parser(bytes, path)
        } catch {
            throw LoadError(error.description)
        }
    }

    /// The addresses of every version's endpoints, and the endpoints whose names did not
    /// resolve (left out, with the reason).
    public struct Resolution: Sendable {
        /// `targets[version]`: resolved addresses in file order.
        public var targets: [[SocketAddress]] = []
        /// "version \"v2\": endpoint ray-v2.internal:8000: <why>", one per endpoint left out.
        public var unresolved: [String] = []
        /// `serverNames[version][target]`: the host of the endpoint each address came from
        /// (the name a TLS backend's certificate is checked against).
        public var serverNames: [[String]] = []
        /// `grpcTargets[version]`: the resolved addresses of its `grpc_endpoints` (none when a
        /// version has none, or none resolved: its gRPC calls are then answered UNAVAILABLE).
        public var grpcTargets: [[SocketAddress]] = []
    }

    /// Whether resolving `versions` needs DNS (some endpoint is a name): numeric addresses are
    /// parsed without blocking, so only names go to the resolver thread.
    public func needsLookup(_ versions: VersionsConfig) -> Bool {
        versions.versions.contains { version in
            (version.endpoints + version.grpcEndpoints).contains { SocketAddress.numericHost($0.host, port: $0.port) == nil }
        }
    }

    /// Resolves every endpoint of every version (blocking DNS for names: at start, or on the
    /// resolver thread). A name
    /// that does not resolve leaves its endpoint out; only a version left with no address at
    /// all is an error, since it could serve nothing.
    public func resolve(_ versions: VersionsConfig, file: String? = nil) throws(LoadError) -> Resolution {
        let versionsPath = file ?? self.versionsPath
        var resolution = Resolution()
        for version in versions.versions {
            var addresses: [SocketAddress] = []
            var names: [String] = []
            var failures: [String] = []
            for endpoint in version.endpoints {
                do {
                    for address in try SocketAddress.resolve(host: endpoint.host, port: endpoint.port) where !addresses.contains(address) {
                        addresses.append(address)
                        names.append(endpoint.host)
                    }
                } catch {
                    failures.append("version \"\(version.name)\": endpoint \(endpoint): \(error)")
                }
            }
            guard !addresses.isEmpty else {
                throw LoadError("""
                    \(versionsPath): version "\(version.name)" has no endpoint that resolves \
                    (\(failures.joined(separator: "; ")))
                    """)
            }
            guard addresses.count <= VersionsConfig.maxEndpoints else {
                throw LoadError("""
                    \(versionsPath): version "\(version.name)": its endpoints resolve to \(addresses.count) addresses; \
                    at most \(VersionsConfig.maxEndpoints) are allowed
                    """)
            }
            resolution.targets.append(addresses)
            resolution.serverNames.append(names)
            resolution.unresolved += failures
            var grpcAddresses: [SocketAddress] = []
            for endpoint in version.grpcEndpoints {
                do {
                    for address in try SocketAddress.resolve(host: endpoint.host, port: endpoint.port) where !grpcAddresses.contains(address) {
                        grpcAddresses.append(address)
                    }
                } catch {
                    resolution.unresolved.append("version \"\(version.name)\": gRPC endpoint \(endpoint): \(error)")
                }
            }
            resolution.grpcTargets.append(Array(grpcAddresses.prefix(VersionsConfig.maxEndpoints)))
        }
        return resolution
    }
}

/// A configuration that could not be loaded, with a message that says where and why.
public struct LoadError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
