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

        public init(name: String, trafficBasisPoints: Int, endpoints: [Endpoint]) {
            self.name = name
            self.trafficBasisPoints = trafficBasisPoints
            self.endpoints = endpoints
        }

        /// `traffic_percent` as written back in JSON (`30`, `12.5`, `0.25`).
        public var trafficPercentText: String {
            let whole = trafficBasisPoints / 100, fraction = trafficBasisPoints % 100
            if fraction == 0 { return "\(whole)" }
            return fraction % 10 == 0 ? "\(whole).\(fraction / 10)" : "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
        }
    }

    public static let maxVersions = 10

    public let service: String
    public let versions: [Version]

    public init(service: String, versions: [Version]) {
        self.service = service
        self.versions = versions
    }

    /// Parses and validates a versions file; every error names its file, line and column.
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> VersionsConfig {
        let root = try JSONParser.parse(bytes, file: file)
        var reader = try ObjectReader(root, file: file, path: "")
        guard let service = try reader.string("service") else {
            throw ConfigError(file: file, position: root.position, message: "the file needs the field \"service\" (the service name, a string)")
        }
        guard !service.isEmpty, service.utf8.count <= 253, service.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw ConfigError(file: file, position: root.position, message: "service must be a non-empty name without control characters")
        }
        let versionsNode = try reader.required("versions")
        guard case .array(let elements) = versionsNode.value else {
            throw reader.error(versionsNode, "versions must be an array of version objects, not \(versionsNode.typeName)")
        }
        guard (1...maxVersions).contains(elements.count) else {
            throw reader.error(versionsNode, "versions has \(elements.count) entries, there must be 1 to \(maxVersions)")
        }
        try reader.finish()

        var versions: [Version] = []
        for (index, element) in elements.enumerated() {
            let version = try parseVersion(element, file: file, path: "versions[\(index)]")
            if let clash = versions.first(where: { $0.name == version.name }) {
                throw ConfigError(file: file, position: element.position, message: "version name \"\(clash.name)\" is used twice; names must be unique")
            }
            versions.append(version)
        }
        let total = versions.reduce(0) { $0 + $1.trafficBasisPoints }
        guard total == 10000 else {
            let shown = VersionsConfig.Version(name: "", trafficBasisPoints: total, endpoints: []).trafficPercentText
            throw ConfigError(file: file, position: versionsNode.position,
                              message: "traffic_percent values sum to \(shown), they must sum to 100")
        }
        return VersionsConfig(service: service, versions: versions)
    }

    private static func parseVersion(_ node: JSONNode, file: String, path: String) throws(ConfigError) -> Version {
        var reader = try ObjectReader(node, file: file, path: path)
        let nameNode = try reader.required("name")
        guard case .string(let name) = nameNode.value else { throw reader.error(nameNode, "\(path).name must be a string") }
        guard isValidName(name) else {
            throw reader.error(nameNode, "version name \"\(name)\" is invalid: use 1 to 63 characters from A-Z a-z 0-9 . _ -")
        }
        let percentNode = try reader.required("traffic_percent")
        let basisPoints = try parsePercent(percentNode, file: file, path: "\(path).traffic_percent")
        let endpointsNode = try reader.required("endpoints")
        guard case .array(let endpointNodes) = endpointsNode.value else {
            throw reader.error(endpointsNode, "\(path).endpoints must be an array of \"host:port\" strings")
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
        for endpointNode in endpointNodes {
            guard case .string(let text) = endpointNode.value, let endpoint = Endpoint(parsing: text) else {
                throw reader.error(endpointNode, "endpoint must be a string \"host:port\" or \"[v6]:port\" with a port from 1 to 65535")
            }
            guard !endpoints.contains(endpoint) else {
                throw reader.error(endpointNode, "endpoint \(endpoint) is listed twice for version \"\(name)\"")
            }
            endpoints.append(endpoint)
        }
        try reader.finish()
        return Version(name: name, trafficBasisPoints: basisPoints, endpoints: endpoints)
    }

    /// Most endpoints (resolved addresses) per version: a request tracks the ones it tried
    /// in a fixed-size set.
    public static let maxEndpoints = 256

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
