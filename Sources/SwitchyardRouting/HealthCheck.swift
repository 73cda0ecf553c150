/// How an endpoint is probed: `GET path` every `intervalMs`; `healthyThreshold` good answers
/// in a row make it healthy again, `unhealthyThreshold` failures in a row make it unhealthy.
/// The defaults suit Ray Serve's HTTP proxy, which answers `/-/healthz`.
public struct HealthCheck: Sendable, Equatable {
    public var path = "/-/healthz"
    public var intervalMs = 2000
    public var timeoutMs = 1000
    public var healthyThreshold = 2
    public var unhealthyThreshold = 2

    public init(path: String = "/-/healthz", intervalMs: Int = 2000, timeoutMs: Int = 1000, healthyThreshold: Int = 2, unhealthyThreshold: Int = 2) {
        self.path = path
        self.intervalMs = intervalMs
        self.timeoutMs = timeoutMs
        self.healthyThreshold = healthyThreshold
        self.unhealthyThreshold = unhealthyThreshold
    }

    /// A `health_check` value: `false` (off, nil), `true` (`base`, or the defaults when the
    /// base is off) or an object whose fields replace those of `base`.
    static func parse(_ node: JSONNode, over base: HealthCheck?, file: String, path: String) throws(ConfigError) -> HealthCheck? {
        if case .bool(let enabled) = node.value { return enabled ? (base ?? HealthCheck()) : nil }
        guard case .object = node.value else {
            throw ConfigError(file: file, position: node.position, message: """
                \(path) must be false (no checks), true (the defaults) or an object such as \
                {"path": "/-/healthz", "interval_ms": 2000, "timeout_ms": 1000, "healthy_threshold": 2, "unhealthy_threshold": 2}
                """)
        }
        var reader = try ObjectReader(node, file: file, path: path)
        var check = base ?? HealthCheck()
        if let probePath = try reader.string("path") {
            guard probePath.hasPrefix("/"), probePath.utf8.count <= 1024,
                  probePath.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw reader.error(node, "\(path).path must start with \"/\" and have no spaces or control characters, e.g. \"/-/healthz\"")
            }
            check.path = probePath
        }
        check.intervalMs = try reader.integer("interval_ms", in: 100...3_600_000) ?? check.intervalMs
        check.timeoutMs = try reader.integer("timeout_ms", in: 10...600_000) ?? check.timeoutMs
        check.healthyThreshold = try reader.integer("healthy_threshold", in: 1...100) ?? check.healthyThreshold
        check.unhealthyThreshold = try reader.integer("unhealthy_threshold", in: 1...100) ?? check.unhealthyThreshold
        try reader.finish()
        guard check.timeoutMs <= check.intervalMs else {
            throw reader.error(node, "\(path).timeout_ms (\(check.timeoutMs)) must not exceed interval_ms (\(check.intervalMs)): one probe per endpoint is in flight at a time")
        }
        return check
    }
}

/// What happens to an unhealthy version's share of the traffic.
public enum UnhealthyPolicy: Sendable, Equatable {
    /// Its share goes to the running versions, in proportion to their weights (the default).
    case redistribute
    /// Its share is answered with 503 `version_unavailable`.
    case fail
    /// Its share goes to the named version while that one runs; else it is redistributed.
    case fallback(String)

    /// `"redistribute"`, `"fail"` or `{"fallback": "<version>"}`; the name is checked against
    /// the file's versions by the caller.
    static func parse(_ node: JSONNode, file: String, path: String) throws(ConfigError) -> UnhealthyPolicy {
        let usage = "\(path) must be \"redistribute\", \"fail\" or {\"fallback\": \"<version name>\"}"
        switch node.value {
        case .string("redistribute"): return .redistribute
        case .string("fail"): return .fail
        case .object:
            var reader = try ObjectReader(node, file: file, path: path)
            guard let name = try reader.string("fallback") else { throw ConfigError(file: file, position: node.position, message: usage) }
            try reader.finish()
            return .fallback(name)
        default:
            throw ConfigError(file: file, position: node.position, message: usage)
        }
    }

    public var description: String {
        switch self {
        case .redistribute: return "redistribute"
        case .fail: return "fail"
        case .fallback(let name): return "fallback:\(name)"
        }
    }
}
