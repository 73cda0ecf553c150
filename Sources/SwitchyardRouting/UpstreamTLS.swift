/// How a version's endpoints are reached over TLS: endpoints written `https://host:port`, or a
/// version-level `"tls": true | {…}`.
///
///     "tls": {"ca_file": "ray-ca.pem", "server_name": "v2.internal", "insecure_skip_verify": false}
public struct UpstreamTLS: Sendable, Hashable {
    /// PEM file of the certificate authorities to trust, as written (relative to the versions
    /// file); nil: the system's CA bundle.
    public var caFile: String?
    /// The name sent as SNI and checked against the certificate; nil: each endpoint's host.
    public var serverName: String?
    /// Accept any certificate. Only when said explicitly; warned about at start.
    public var insecureSkipVerify = false

    public init(caFile: String? = nil, serverName: String? = nil, insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }

    /// `true` (the defaults), `false` (plain text: nil) or an object.
    static func parse(_ node: JSONNode, file: String, path: String) throws(ConfigError) -> UpstreamTLS? {
        if case .bool(let enabled) = node.value { return enabled ? UpstreamTLS() : nil }
        guard case .object = node.value else {
            throw ConfigError(file: file, position: node.position, message: """
                \(path) must be true (verify against the system's CAs), false, or an object such as \
                {"ca_file": "ca.pem", "server_name": "backend.internal", "insecure_skip_verify": false}
                """)
        }
        var reader = try ObjectReader(node, file: file, path: path)
        var tls = UpstreamTLS()
        if let caFile = try reader.string("ca_file") {
            guard !caFile.isEmpty else { throw reader.error(node, "\(path).ca_file must be a path to a PEM file, not empty") }
            tls.caFile = caFile
        }
        if let name = try reader.string("server_name") {
            guard isValidServerName(name) else {
                throw reader.error(node, "\(path).server_name \"\(name)\" is not a host name (letters, digits, '-', '.'; at most 253 characters)")
            }
            tls.serverName = name
        }
        tls.insecureSkipVerify = try reader.bool("insecure_skip_verify") ?? false
        try reader.finish()
        if tls.insecureSkipVerify && tls.caFile != nil {
            throw reader.error(node, "\(path): ca_file has no effect with insecure_skip_verify; remove one of them")
        }
        return tls
    }

    static func isValidServerName(_ name: String) -> Bool {
        (1...253).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."):
                return true
            default:
                return false
            }
        }
    }
}

/// An endpoint as written in a versions file: `host:port`, or with a scheme, `http://host[:port]`
/// or `https://host[:port]` (ports 80 and 443 when left out).
struct EndpointText {
    enum Scheme { case none, http, https }

    let scheme: Scheme
    let endpoint: Endpoint

    init?(_ text: String) {
        var rest = Substring(text)
        var defaultPort: UInt16?
        if rest.hasPrefix("https://") {
            scheme = .https
            rest = rest.dropFirst(8)
            defaultPort = 443
        } else if rest.hasPrefix("http://") {
            scheme = .http
            rest = rest.dropFirst(7)
            defaultPort = 80
        } else {
            scheme = .none
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }  // "https://host/" as copied from a browser
        if let parsed = Endpoint(parsing: String(rest)) {
            endpoint = parsed
        } else if let defaultPort, !rest.isEmpty, !rest.contains(":") || (rest.hasPrefix("[") && rest.hasSuffix("]")),
                  let parsed = Endpoint(parsing: "\(rest):\(defaultPort)") {
            endpoint = parsed
        } else {
            return nil
        }
    }
}
