import SwitchyardRouting
import Yams

/// One `-f` file: Anyscale's service config YAML, with Switchyard's additions.
///
///     name: demo                 # the service
///     version_name: v3           # optional: v-<10 characters of the content's hash>
///     applications: [...]        # a Ray Serve config, deployed to ray_dashboard
///     endpoints: ["10.0.3.7:8000"]
///     grpc_endpoints: ["10.0.3.7:9000"]
///     ray_dashboard: {address: "http://10.0.3.7:8265", token_file: ray-token}
public struct ServiceConfigFile: Sendable {
    public let path: String
    public let service: String?
    public let versionName: String
    /// Whether the name was derived from the content.
    public let derivedName: Bool
    public let endpoints: [String]?
    public let grpcEndpoints: [String]?
    /// The Ray Serve config to deploy (`applications` and the options that go with it), as
    /// Ray's REST API takes it; nil when the file has no `applications`.
    public let serveConfig: JSONNode?
    /// The names of the applications in it, to wait for.
    public let applications: [String]
    public let rayDashboard: RayDashboard?
    /// Anyscale fields read and left alone, for the one-line note.
    public let ignored: [String]

    public struct RayDashboard: Sendable {
        /// `host:port` of the dashboard (plain HTTP).
        public let address: Endpoint
        /// The cluster's token, read from `token_file` (relative to the YAML).
        public let token: String?
    }

    /// Fields of Anyscale's service config that say how Anyscale builds and runs the cluster;
    /// the cluster is already running here, so they are noted and skipped.
    static let anyscaleFields: Set<String> = [
        "image_uri", "containerfile", "compute_config", "working_dir", "excludes", "requirements", "env_vars",
        "py_modules", "py_executable", "cloud", "project", "query_auth_token_enabled", "tracing_config",
        "logging_config", "ray_gcs_external_storage_config", "description", "tags", "version_level",
        "registry_login_secret", "timeout_s", "auto_complete_rollout", "max_surge_percent",
    ]
    /// Fields that go to Ray with `applications`.
    static let serveFields = ["applications", "http_options", "grpc_options", "proxy_location"]
    static let ownFields: Set<String> = ["name", "version_name", "endpoints", "grpc_endpoints", "ray_dashboard"]

    public init(path: String, bytes: [UInt8], readFile: (String) throws -> [UInt8]) throws(DeployError) {
        self.path = path
        func fail(_ message: String, _ node: Node? = nil) -> DeployError {
            let place = node?.mark.map { ":\($0.line):\($0.column)" } ?? ""
            return DeployError(.invalid, "\(path)\(place): \(message)")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw fail("not valid YAML (\(error))")
        }
        guard let root, case .mapping(let mapping) = root else {
            throw fail("the file must be a YAML mapping (name:, version_name:, applications:, endpoints:, …)", root)
        }
        var fields: [String: Node] = [:]
        var ignored: [String] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else { throw fail("keys must be plain names", key) }
            let name = scalar.string
            if Self.anyscaleFields.contains(name) {
                ignored.append(name)
            } else if Self.ownFields.contains(name) || Self.serveFields.contains(name) {
                fields[name] = value
            } else {
                let known = Self.ownFields.union(Self.serveFields).union(Self.anyscaleFields)
                let hint = known.min { editDistance($0, name) < editDistance($1, name) }.flatMap { editDistance($0, name) <= 3 ? " (did you mean \"\($0)\"?)" : nil }
                throw fail("unknown field \"\(name)\"\(hint ?? "; Switchyard reads name, version_name, applications, http_options, grpc_options, proxy_location, endpoints, grpc_endpoints, ray_dashboard")", key)
            }
        }
        self.ignored = ignored

        func string(_ key: String) throws(DeployError) -> String? {
            guard let node = fields[key] else { return nil }
            guard case .scalar(let scalar) = node, !scalar.string.isEmpty else { throw fail("\(key) must be a string", node) }
            return scalar.string
        }
        func addresses(_ key: String) throws(DeployError) -> [String]? {
            guard let node = fields[key] else { return nil }
            guard case .sequence(let sequence) = node, !sequence.isEmpty else {
                throw fail("\(key) must be a list of \"host:port\" addresses", node)
            }
            var result: [String] = []
            for element in sequence {
                guard case .scalar(let scalar) = element, VersionsConfig.isValidEndpoint(scalar.string) else {
                    throw fail("\(key): \"\(element.string ?? "?")\" is not a \"host:port\" address", element)
                }
                result.append(scalar.string)
            }
            return result
        }

        service = try string("name")
        if let given = try string("version_name") {
            guard VersionsConfig.isValidName(given) else {
                throw fail("version_name \"\(given)\" is invalid: use 1 to 63 characters from A-Z a-z 0-9 . _ -", fields["version_name"])
            }
            versionName = given
            derivedName = false
        } else {
            versionName = Self.derivedName(of: bytes)
            derivedName = true
        }
        endpoints = try addresses("endpoints")
        grpcEndpoints = try addresses("grpc_endpoints")

        if let node = fields["applications"] {
            guard case .sequence(let sequence) = node, !sequence.isEmpty else { throw fail("applications must be a list of Ray Serve applications", node) }
            var names: [String] = []
            for application in sequence {
                guard case .mapping(let app) = application else { throw fail("each application must be a mapping (name:, import_path:, …)", application) }
                // Ray names an application without a name "default".
                names.append(app["name"]?.string ?? "default")
            }
            applications = names
            var members: [(String, JSONNode)] = []
            for key in Self.serveFields {
                guard let value = fields[key] else { continue }
                members.append((key, try Self.json(value, path: path)))
            }
            serveConfig = .object(members)
        } else {
            for key in Self.serveFields where fields[key] != nil {
                throw fail("\(key) is given without applications; it goes to Ray with them", fields[key])
            }
            applications = []
            serveConfig = nil
        }

        if let node = fields["ray_dashboard"] {
            guard case .mapping(let dashboard) = node else { throw fail("ray_dashboard must be a mapping {address: http://host:8265, token_file: …}", node) }
            for key in dashboard.keys where !["address", "token_file"].contains(key.string ?? "") {
                throw fail("unknown field \"\(key.string ?? "?")\" in ray_dashboard; it takes address and token_file", key)
            }
            guard var address = dashboard["address"]?.string else { throw fail("ray_dashboard needs address, e.g. http://127.0.0.1:8265", node) }
            if address.hasPrefix("https://") { throw fail("ray_dashboard.address: only http:// is supported", dashboard["address"]) }
            if address.hasPrefix("http://") { address.removeFirst("http://".count) }
            if address.hasSuffix("/") { address.removeLast() }
            guard let endpoint = Endpoint(parsing: address) else {
                throw fail("ray_dashboard.address \"\(address)\" must be http://host:port (the dashboard's port, 8265 by default)", dashboard["address"])
            }
            var token: String?
            if let file = dashboard["token_file"]?.string {
                let full = file.hasPrefix("/") ? file : "\(VersionsStore.directory(of: path))/\(file)"
                do {
                    token = String(decoding: try readFile(full), as: UTF8.self).trimmingWhitespace
                } catch {
                    throw fail("ray_dashboard.token_file \(full): cannot read (\(error))", dashboard["token_file"])
                }
                if token?.isEmpty != false { throw fail("ray_dashboard.token_file \(full) is empty", dashboard["token_file"]) }
            }
            rayDashboard = RayDashboard(address: endpoint, token: token)
        } else {
            rayDashboard = nil
        }
        if serveConfig != nil && rayDashboard == nil {
            throw fail("applications are given but not where to deploy them; add ray_dashboard: {address: http://HOST:8265}")
        }
    }

    /// `v-` and ten lowercase letters and digits from a hash of the file's bytes, as Anyscale
    /// names versions: the same file gets the same name, so deploying it again changes nothing.
    /// (FNV-1a: a name, not a secret; 36^10 names leave collisions to chance among a service's
    /// ten versions.)
    public static func derivedName(of bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        var name = "v-"
        for _ in 0..<10 {
            name.append(alphabet[Int(hash % 36)])
            hash /= 36
        }
        return name
    }

    /// A YAML node as JSON, with YAML's types (numbers, booleans, null) kept; iterative, so a
    /// deeply nested file cannot exhaust the stack.
    static func json(_ node: Node, path: String) throws(DeployError) -> JSONNode {
        func scalar(_ node: Node) throws(DeployError) -> JSONNode {
            guard case .scalar(let scalar) = node else { return JSONNode(.null) }
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case Tag.Name.null: return JSONNode(.null)
            case Tag.Name.bool: return JSONNode(.bool(node.bool ?? false))
            case Tag.Name.int:
                guard let value = node.int else { throw DeployError(.invalid, "\(path): \(scalar.string) is not a whole number JSON can hold") }
                return .integer(value)
            case Tag.Name.float:
                guard let value = node.float, value.isFinite else {
                    throw DeployError(.invalid, "\(path): \(scalar.string) is not a finite number")
                }
                return JSONNode(.number(value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"))
            default: return .string(scalar.string)
            }
        }
        func open(_ node: Node) throws(DeployError) -> Frame? {
            switch node {
            case .sequence(let sequence): return .sequence(Array(sequence), index: 0, built: [])
            case .mapping(let mapping):
                var pairs: [(String, Node)] = []
                for (key, value) in mapping {
                    guard let name = key.string else { throw DeployError(.invalid, "\(path): a mapping key is not a string") }
                    pairs.append((name, value))
                }
                return .mapping(pairs, index: 0, built: [])
            default: return nil
            }
        }
        guard let first = try open(node) else { return try scalar(node) }
        var stack = [first]
        while var top = stack.popLast() {
            guard stack.count < 64 else { throw DeployError(.invalid, "\(path): nested deeper than 64 levels") }
            var child: Node?
            switch top {
            case .sequence(let nodes, let index, let built):
                if index < nodes.count { child = nodes[index]; top = .sequence(nodes, index: index + 1, built: built) }
            case .mapping(let pairs, let index, let built):
                if index < pairs.count { child = pairs[index].1; top = .mapping(pairs, index: index + 1, built: built) }
            }
            guard let child else {
                let finished: JSONNode
                switch top {
                case .sequence(_, _, let built): finished = JSONNode(.array(built))
                case .mapping(_, _, let built): finished = .object(built)
                }
                guard let parent = stack.popLast() else { return finished }
                stack.append(Self.adding(finished, to: parent))
                continue
            }
            stack.append(top)
            if let frame = try open(child) {
                stack.append(frame)
            } else {
                let value = try scalar(child)
                stack.append(Self.adding(value, to: stack.removeLast()))
            }
        }
        return JSONNode(.null)
    }

    /// A YAML collection being converted: its children, the next one, the ones done.
    private enum Frame {
        case sequence([Node], index: Int, built: [JSONNode])
        case mapping([(String, Node)], index: Int, built: [(String, JSONNode)])
    }

    /// `parent` with `value` as the child it last stepped into.
    private static func adding(_ value: JSONNode, to parent: Frame) -> Frame {
        switch parent {
        case .sequence(let nodes, let index, let built): return .sequence(nodes, index: index, built: built + [value])
        case .mapping(let pairs, let index, let built): return .mapping(pairs, index: index, built: built + [(pairs[index - 1].0, value)])
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
