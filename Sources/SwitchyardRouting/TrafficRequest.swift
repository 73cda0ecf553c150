/// The traffic split a deploy asks for, as Anyscale's `--versions` takes it:
///
///     [{"name": "v1", "traffic_percent": 30}, {"name": "v2", "traffic_percent": 70}]
///
/// Every version the service keeps is listed; the shares sum to exactly 100 (in hundredths);
/// `traffic_percent: 0` keeps a version dark (pinned traffic only).
public struct TrafficRequest: Sendable, Equatable {
    public struct Share: Sendable, Equatable {
        public let name: String
        /// Hundredths of a percent.
        public let basisPoints: Int
    }

    public let shares: [Share]

    public func share(of name: String) -> Int? {
        shares.first { $0.name == name }?.basisPoints
    }

    /// Parses `--versions`; `source` names it in errors (`--versions` or the `@file`'s path),
    /// each with its line and column, all of them at once.
    public static func parse(_ bytes: [UInt8], source: String) throws(ConfigError) -> TrafficRequest {
        try parse(try JSONParser.parse(bytes, file: source), source: source)
    }

    /// The same, from a parsed node (the admin API's request body holds it).
    public static func parse(_ root: JSONNode, source: String) throws(ConfigError) -> TrafficRequest {
        guard case .array(let elements) = root.value else {
            throw ConfigError(file: source, position: root.position, message: """
                --versions must be a JSON array like [{"name": "v1", "traffic_percent": 50}, {"name": "v2", "traffic_percent": 50}], \
                not \(root.typeName)
                """)
        }
        var errors: [ConfigError] = []
        if !(1...VersionsConfig.maxVersions).contains(elements.count) {
            errors.append(ConfigError(file: source, position: root.position,
                message: "--versions has \(elements.count) entries, there must be 1 to \(VersionsConfig.maxVersions)"))
        }
        var shares: [Share] = []
        var complete = true
        for (index, element) in elements.enumerated() {
            do {
                let share = try parseShare(element, source: source, path: "[\(index)]")
                if shares.contains(where: { $0.name == share.name }) {
                    errors.append(ConfigError(file: source, position: element.position,
                        message: "version \"\(share.name)\" is listed twice; each version once"))
                }
                shares.append(share)
            } catch {
                errors.append(error)
                complete = false
            }
        }
        let total = shares.reduce(0) { $0 + $1.basisPoints }
        if complete && !shares.isEmpty && total != 10000 {
            let versions = shares.map { VersionsConfig.Version(name: $0.name, trafficBasisPoints: $0.basisPoints, endpoints: []) }
            errors.append(ConfigError(file: source, position: root.position, message: VersionsConfig.sumProblem(versions, total: total)))
        }
        guard errors.isEmpty else { throw ConfigError(all: errors) }
        return TrafficRequest(shares: shares)
    }

    private static func parseShare(_ node: JSONNode, source: String, path: String) throws(ConfigError) -> Share {
        var reader = try ObjectReader(node, file: source, path: path)
        let nameNode = try reader.required("name")
        guard case .string(let name) = nameNode.value else { throw reader.error(nameNode, "\(path).name must be a string") }
        guard VersionsConfig.isValidName(name) else {
            throw reader.error(nameNode, "version name \"\(name)\" is invalid: use 1 to 63 characters from A-Z a-z 0-9 . _ -")
        }
        let basisPoints = try VersionsConfig.parsePercent(try reader.required("traffic_percent"), file: source, path: "\(path).traffic_percent")
        try reader.finish()
        return Share(name: name, basisPoints: basisPoints)
    }
}
