/// The hot-reloaded versions file: which versions exist, their traffic split and endpoints.
///
///     {"service": "demo",
///      "versions": [{"name": "v1", "traffic_percent": 30, "endpoints": ["127.0.0.1:8001"]}]}
public struct VersionsConfig: Sendable, Equatable {
    public struct Version: Sendable, Equatable {
        /// 1–63 characters from `[A-Za-z0-9._-]`, unique in the file.
        public let name: String
        /// Share of unpinned traffic in hundredths of a percent (0…10000). 0 = dark version.
        public let trafficBasisPoints: Int
        /// At least one backend address.
        public let endpoints: [Endpoint]
        /// Where its gRPC calls go (HTTP/2 without TLS: a Ray Serve cluster's gRPC proxies);
        /// empty when the version takes no gRPC.
        public let grpcEndpoints: [Endpoint]
        /// How its endpoints are probed; nil when they are not.
        public let healthCheck: HealthCheck?
        /// What happens to its share while it has no healthy endpoint.
        public let onUnhealthy: UnhealthyPolicy
        /// Whether an unpinned request that finds no reachable endpoint here may be routed once
        /// more, to another version.
        public let retryOtherVersion: Bool
        /// Set when its endpoints speak TLS.
        public let tls: UpstreamTLS?
        /// A file holding the token sent to its backends as `Authorization: Bearer <token>`
        /// instead of the client's (as written, relative to the versions file).
        public let upstreamTokenFile: String?
        /// When the writer that added it did so (RFC 3339, UTC); nil in a hand-written file.
        public let createdAt: String?

        public init(
            name: String, trafficBasisPoints: Int, endpoints: [Endpoint], healthCheck: HealthCheck? = nil,
            onUnhealthy: UnhealthyPolicy = .redistribute, retryOtherVersion: Bool = false, tls: UpstreamTLS? = nil,
            upstreamTokenFile: String? = nil, grpcEndpoints: [Endpoint] = [], createdAt: String? = nil
        ) {
            self.name = name
            self.trafficBasisPoints = trafficBasisPoints
            self.endpoints = endpoints
            self.grpcEndpoints = grpcEndpoints
            self.healthCheck = healthCheck
            self.onUnhealthy = onUnhealthy
            self.retryOtherVersion = retryOtherVersion
            self.tls = tls
            self.upstreamTokenFile = upstreamTokenFile
            self.createdAt = createdAt
        }

        /// `traffic_percent` as written back in JSON (`30`, `12.5`, `0.25`).
        public var trafficPercentText: String {
            let whole = trafficBasisPoints / 100, fraction = trafficBasisPoints % 100
            if fraction == 0 { return "\(whole)" }
            return fraction % 10 == 0 ? "\(whole).\(fraction / 10)" : "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
        }
    }

    public static let maxVersions = 10

    /// What a version gets when it does not say: from switchyard.json.
    public struct Defaults: Sendable, Equatable {
        /// nil: versions are not probed unless they ask to be.
        public var healthCheck: HealthCheck? = HealthCheck()
        public var retryOtherVersion = false

        public init(healthCheck: HealthCheck? = HealthCheck(), retryOtherVersion: Bool = false) {
            self.healthCheck = healthCheck
            self.retryOtherVersion = retryOtherVersion
        }
    }

    public let service: String
    public let versions: [Version]
    /// How many times a writer (`switchyard deploy`, `revert`, the admin API) changed the file;
    /// 0 for a file written by hand. Not used for routing.
    public let generation: Int
    /// Who made the current generation, and how; nil for a file written by hand.
    public let change: Change?
    /// The states before this one, newest first (bounded by the writers). Not used for routing.
    public let history: [HistoryEntry]

    public init(service: String, versions: [Version], generation: Int = 0, change: Change? = nil, history: [HistoryEntry] = []) {
        self.service = service
        self.versions = versions
        self.generation = generation
        self.change = change
        self.history = history
    }

    /// Parses and validates a versions file; every error names its file, line and column, and
    /// all the errors of a file are reported at once.
    ///
    /// The file is an object (`{"service": …, "versions": […]}`) or just the versions array,
    /// as given to Anyscale's `--versions` (then the service is named after the file).
    public static func parse(_ bytes: [UInt8], file: String, defaults: Defaults = Defaults()) throws(ConfigError) -> VersionsConfig {
        let root = try JSONParser.parse(bytes, file: file)
        var errors: [ConfigError] = []
        let service: String
        let versionsNode: JSONNode
        var record = WriterRecord()
        if case .array = root.value {
            service = serviceName(fromFile: file)
            versionsNode = root
        } else {
            var reader: ObjectReader
            do {
                reader = try ObjectReader(root, file: file, path: "")
            } catch {
                throw ConfigError(file: file, position: root.position, message: """
                    the file must be an object {"service": "name", "versions": [...]} or the versions array \
                    [{"name": "v1", "traffic_percent": 100, "endpoints": ["host:port"]}, ...], not \(root.typeName)
                    """)
            }
            var name: String?
            let serviceNode = reader.peek("service")
            do {
                name = try reader.string("service")
                if name == nil {
                    errors.append(ConfigError(file: file, position: root.position, message: "the file needs the field \"service\" (the service name, a string)"))
                }
            } catch {
                errors.append(error)
            }
            if let name, let problem = serviceNameProblem(name) {
                errors.append(ConfigError(file: file, position: serviceNode?.position ?? root.position, message: problem))
            }
            service = name ?? ""
            record = WriterRecord.parse(&reader, file: file, defaults: defaults, errors: &errors)
            do {
                versionsNode = try reader.required("versions")
            } catch {
                throw ConfigError(all: errors + [error])
            }
            do { try reader.finish() } catch { errors.append(error) }
        }
        guard case .array(let elements) = versionsNode.value else {
            throw ConfigError(all: errors + [ConfigError(file: file, position: versionsNode.position,
                message: "versions must be an array of version objects, not \(versionsNode.typeName)")])
        }
        let versions = parseVersionList(elements, at: versionsNode.position, file: file, path: "versions", defaults: defaults, errors: &errors)
        guard errors.isEmpty else { throw ConfigError(all: errors) }
        return VersionsConfig(service: service, versions: versions, generation: record.generation, change: record.change, history: record.history)
    }

    /// A list of versions (the file's, or one in its history): 1 to 10 valid versions with
    /// unique names, fallbacks that name another of them, and shares that sum to 100.
    static func parseVersionList(
        _ elements: [JSONNode], at position: SourcePosition, file: String, path: String, defaults: Defaults, errors: inout [ConfigError]
    ) -> [Version] {
        if !(1...maxVersions).contains(elements.count) {
            errors.append(ConfigError(file: file, position: position,
                message: "\(path) has \(elements.count) entries, there must be 1 to \(maxVersions)"))
        }
        var versions: [Version] = []
        var complete = true
        for (index, element) in elements.enumerated() {
            guard let version = parseVersion(element, file: file, path: "\(path)[\(index)]", defaults: defaults, errors: &errors) else {
                complete = false
                continue
            }
            if let clash = versions.first(where: { $0.name == version.name }) {
                errors.append(ConfigError(file: file, position: element.position, message: "version name \"\(clash.name)\" is used twice; names must be unique"))
            }
            versions.append(version)
        }
        for (index, version) in versions.enumerated() {
            guard case .fallback(let target) = version.onUnhealthy else { continue }
            if target == version.name || !versions.contains(where: { $0.name == target }) {
                let others = versions.map(\.name).filter { $0 != version.name }.joined(separator: ", ")
                errors.append(ConfigError(file: file, position: elements[index].position, message: """
                    version "\(version.name)": on_unhealthy falls back to "\(target)", which is \
                    \(target == version.name ? "itself" : "not a version in this file"); name another version (\(others))
                    """))
            }
        }
        let total = versions.reduce(0) { $0 + $1.trafficBasisPoints }
        if complete && total != 10000 {
            errors.append(ConfigError(file: file, position: position, message: sumProblem(versions, total: total)))
        }
        return versions
    }

    /// "traffic_percent values sum to 99, they must sum to 100 (v3: 41 instead of 40 would do)":
    /// the sum, and one change that fixes it when one does.
    public static func sumProblem(_ versions: [Version], total: Int) -> String {
        var message = "traffic_percent values sum to \(percentText(total)), they must sum to 100"
        let missing = 10000 - total
        if let fix = versions.reversed().first(where: { (0...10000).contains($0.trafficBasisPoints + missing) }) {
            message += " (\(fix.name): \(percentText(fix.trafficBasisPoints + missing)) instead of \(fix.trafficPercentText) would do)"
        }
        return message
    }

    /// Hundredths of a percent as written in JSON: `30`, `12.5`, `0.25`.
    public static func percentText(_ basisPoints: Int) -> String {
        Version(name: "", trafficBasisPoints: basisPoints, endpoints: []).trafficPercentText
    }

    /// `path/summarizer.json` → `summarizer`.
    static func serviceName(fromFile file: String) -> String {
        let base = file.split(separator: "/").last.map(String.init) ?? file
        let stem = base.split(separator: ".", maxSplits: 1).first.map(String.init) ?? base
        return stem.isEmpty ? "service" : stem
    }

    /// What is wrong with a service name, if anything: it is shown in logs, metrics and
    /// `/status`, so it is short (a DNS name's 253 bytes at most) and printable.
    static func serviceNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "service must not be empty" }
        let length = name.utf8.count
        if length > 253 { return "service is \(length) bytes long; it may have 253 at most" }
        if !name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) {
            return "service must not contain control characters"
        }
        return nil
    }

    /// One version; its problems go to `errors` (all of them, each field checked on its own).
    private static func parseVersion(
        _ node: JSONNode, file: String, path: String, defaults: Defaults, errors: inout [ConfigError]
    ) -> Version? {
        var reader: ObjectReader
        do {
            reader = try ObjectReader(node, file: file, path: path)
        } catch {
            errors.append(error)
            return nil
        }
        let before = errors.count
        var name = ""
        do {
            let nameNode = try reader.required("name")
            if case .string(let text) = nameNode.value {
                name = text
                if !isValidName(text) {
                    errors.append(reader.error(nameNode, "version name \"\(text)\" is invalid: use 1 to 63 characters from A-Z a-z 0-9 . _ -"))
                }
            } else {
                errors.append(reader.error(nameNode, "\(path).name must be a string"))
            }
        } catch {
            errors.append(error)
        }
        var basisPoints = 0
        do {
            basisPoints = try parsePercent(try reader.required("traffic_percent"), file: file, path: "\(path).traffic_percent")
        } catch {
            errors.append(error)
        }
        var endpoints: [Endpoint] = []
        var tls: UpstreamTLS?
        do {
            let tlsNode = reader.take("tls")
            let configured = try tlsNode.map { node throws(ConfigError) in try UpstreamTLS.parse(node, file: file, path: "\(path).tls") }
            let (parsed, scheme) = try parseEndpoints(&reader, version: name.isEmpty ? path : name)
            endpoints = parsed
            tls = try tlsSettings(configured: configured, node: tlsNode, scheme: scheme, reader: reader, version: name.isEmpty ? path : name)
        } catch {
            errors.append(error)
        }
        var grpcEndpoints: [Endpoint] = []
        do {
            grpcEndpoints = try parseGRPCEndpoints(&reader, version: name.isEmpty ? path : name)
        } catch {
            errors.append(error)
        }
        var healthCheck = defaults.healthCheck
        var onUnhealthy = UnhealthyPolicy.redistribute
        var retryOtherVersion = defaults.retryOtherVersion
        do {
            if let node = reader.take("health_check") {
                healthCheck = try HealthCheck.parse(node, over: defaults.healthCheck, file: file, path: "\(path).health_check")
            }
            if let node = reader.take("on_unhealthy") {
                onUnhealthy = try UnhealthyPolicy.parse(node, file: file, path: "\(path).on_unhealthy")
            }
            retryOtherVersion = try reader.bool("retry_other_version") ?? retryOtherVersion
        } catch {
            errors.append(error)
        }
        var upstreamTokenFile: String?
        do {
            upstreamTokenFile = try reader.string("upstream_bearer_token_file")
            if upstreamTokenFile?.isEmpty == true {
                errors.append(reader.error(reader.node, "\(path).upstream_bearer_token_file must be a path to a file holding the token, not empty"))
            }
        } catch {
            errors.append(error)
        }
        var createdAt: String?
        do {
            createdAt = try reader.string("created_at")
            if let text = createdAt, !Timestamp.isValid(text) {
                errors.append(reader.error(reader.peek("created_at") ?? reader.node, "\(path).created_at is \"\(text)\"; write an RFC 3339 time in UTC, e.g. 2026-12-04T03:40:00.000Z"))
            }
        } catch {
            errors.append(error)
        }
        do { try reader.finish() } catch { errors.append(error) }
        guard errors.count == before else { return nil }
        return Version(
            name: name, trafficBasisPoints: basisPoints, endpoints: endpoints, healthCheck: healthCheck,
            onUnhealthy: onUnhealthy, retryOtherVersion: retryOtherVersion, tls: tls, upstreamTokenFile: upstreamTokenFile,
            grpcEndpoints: grpcEndpoints, createdAt: createdAt)
    }

    /// A version's TLS from its `tls` field and its endpoints' scheme, which must agree.
    private static func tlsSettings(
        configured: UpstreamTLS??, node: JSONNode?, scheme: EndpointText.Scheme, reader: ObjectReader, version name: String
    ) throws(ConfigError) -> UpstreamTLS? {
        switch (configured, scheme) {
        case (nil, .https): return UpstreamTLS()
        case (nil, _): return nil
        case (.some(nil), .https):
            throw reader.error(node ?? reader.node, "version \"\(name)\" has \"tls\": false but https:// endpoints; remove one of them")
        case (.some(.some), .http):
            throw reader.error(node ?? reader.node, "version \"\(name)\" has \"tls\" settings but http:// endpoints; write them https:// or host:port")
        case (.some(let tls), _): return tls
        }
    }

    /// The endpoints and their scheme, the same for all of them (`.none` when none is written).
    private static func parseEndpoints(
        _ reader: inout ObjectReader, version name: String
    ) throws(ConfigError) -> ([Endpoint], EndpointText.Scheme) {
        guard let endpointsNode = reader.take("endpoints") else {
            throw reader.error(reader.node, """
                version "\(name)" needs the field "endpoints": the "host:port" addresses of its backends \
                (e.g. the HTTP proxies of its Ray Serve cluster, port 8000)
                """)
        }
        guard case .array(let endpointNodes) = endpointsNode.value else {
            throw reader.error(endpointsNode, "\(reader.fieldPath("endpoints")) must be an array of \"host:port\" strings")
        }
        guard !endpointNodes.isEmpty else {
            throw reader.error(endpointsNode, "version \"\(name)\" has no endpoints; give at least one \"host:port\"")
        }
        guard endpointNodes.count <= maxEndpoints else {
            throw reader.error(endpointsNode, """
                version "\(name)" has \(endpointNodes.count) endpoints; at most \(maxEndpoints) are allowed \
                (put a load balancer in front of larger pools)
                """)
        }
        var endpoints: [Endpoint] = []
        var scheme: EndpointText.Scheme?
        for endpointNode in endpointNodes {
            guard case .string(let text) = endpointNode.value, let parsed = EndpointText(text) else {
                throw reader.error(endpointNode, """
                    endpoint must be a string "host:port", "[v6]:port" or "https://host[:port]" with a port from 1 to 65535
                    """)
            }
            let endpoint = parsed.endpoint
            guard !endpoints.contains(endpoint) else {
                throw reader.error(endpointNode, "endpoint \(endpoint) is listed twice for version \"\(name)\"")
            }
            let secure = parsed.scheme == .https
            if let scheme, (scheme == .https) != secure {
                throw reader.error(endpointNode, """
                    version "\(name)" mixes https:// endpoints with plain ones; a version's endpoints all speak TLS or none do
                    """)
            }
            switch parsed.scheme {
            case .https: scheme = .https
            case .http: if scheme != .https { scheme = .http }
            case .none: if scheme == nil { scheme = EndpointText.Scheme.none }
            }
            endpoints.append(endpoint)
        }
        return (endpoints, scheme ?? .none)
    }

    /// `grpc_endpoints`: optional, "host:port" (or http://) addresses speaking gRPC over HTTP/2
    /// without TLS.
    private static func parseGRPCEndpoints(_ reader: inout ObjectReader, version name: String) throws(ConfigError) -> [Endpoint] {
        guard let listNode = reader.take("grpc_endpoints") else { return [] }
        guard case .array(let nodes) = listNode.value, !nodes.isEmpty else {
            throw reader.error(listNode, """
                \(reader.fieldPath("grpc_endpoints")) must be a non-empty array of "host:port" strings \
                (the gRPC proxies of the version's Ray Serve cluster, port 9000), or left out
                """)
        }
        guard nodes.count <= maxEndpoints else {
            throw reader.error(listNode, "version \"\(name)\" has \(nodes.count) grpc_endpoints; at most \(maxEndpoints) are allowed")
        }
        var endpoints: [Endpoint] = []
        for node in nodes {
            guard case .string(let text) = node.value, let parsed = EndpointText(text) else {
                throw reader.error(node, "a gRPC endpoint must be a string \"host:port\" or \"[v6]:port\" with a port from 1 to 65535")
            }
            guard parsed.scheme != .https else {
                throw reader.error(node, """
                    gRPC endpoint \(text) of version "\(name)": TLS to gRPC endpoints is not supported; \
                    give the plaintext (h2c) "host:port" of the gRPC proxy
                    """)
            }
            guard !endpoints.contains(parsed.endpoint) else {
                throw reader.error(node, "gRPC endpoint \(parsed.endpoint) is listed twice for version \"\(name)\"")
            }
            endpoints.append(parsed.endpoint)
        }
        return endpoints
    }

    /// Most endpoints (resolved addresses) per version: a request tracks the ones it tried
    /// in a fixed-size set.
    public static let maxEndpoints = 256

    /// Whether `text` reads as an endpoint of the versions file ("host:port", "[v6]:port",
    /// "http(s)://host[:port]").
    public static func isValidEndpoint(_ text: String) -> Bool { EndpointText(text) != nil }

    public static func isValidName(_ name: String) -> Bool {
        (1...63).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    /// Reads a percentage with at most two decimals into hundredths, exactly (no floating point).
    static func parsePercent(_ node: JSONNode, file: String, path: String) throws(ConfigError) -> Int {
        let fail = { (why: String) in ConfigError(file: file, position: node.position, message: "\(path) \(why)") }
        guard case .number(let text) = node.value else { throw fail("must be a number from 0 to 100, not \(node.typeName)") }
        if text.hasPrefix("-") { throw fail("is \(text), it must be from 0 to 100") }
        if text.contains(where: { $0 == "e" || $0 == "E" }) { throw fail("is \(text): write it without an exponent, e.g. 12.5") }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let fraction = parts.count > 1 ? parts[1] : ""
        guard fraction.count <= 2 else { throw fail("is \(text): at most two decimals are allowed (0.01 % resolution)") }
        guard parts[0].count <= 3, let whole = Int(parts[0]) else { throw fail("is \(text), it must be from 0 to 100") }
        let hundredths = (Int(fraction) ?? 0) * (fraction.count == 1 ? 10 : 1)
        let value = whole * 100 + hundredths
        guard value <= 10000 else { throw fail("is \(text), it must be from 0 to 100") }
        return value
    }
}
