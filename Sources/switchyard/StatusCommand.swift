import ArgumentParser
import SwitchyardIO
import SwitchyardProxy
import SwitchyardRouting
import Yams

/// `switchyard status`: a running proxy's state as YAML, in the shape of `anyscale service
/// status` (the service, then one entry per version), plus effective weights and endpoint health.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running Switchyard's service, versions, weights and endpoint health (from its admin API).")

    @OptionGroup var options: ConfigOption

    @Option(help: "The admin API's host:port (default: admin.address from the config file).")
    var admin: String?

    @Flag(help: "Print the admin API's /status JSON as it is.")
    var json = false

    func run() throws {
        do {
            let address = try adminAddress()
            let body = try AdminClient.get("/status", from: address)
            if json {
                print(String(decoding: body, as: UTF8.self), terminator: "")
                return
            }
            let status = try JSONParser.parse(body, file: "GET http://\(address)/status")
            print(try Yams.serialize(node: Self.document(status)), terminator: "")
        } catch let error as ExitCode {
            throw error
        } catch {
            var standardError = StandardError()
            print("switchyard status: \(error)", to: &standardError)
            throw ExitCode.failure
        }
    }

    private func adminAddress() throws -> Endpoint {
        guard let admin else { return try ConfigLoader(configPath: options.config).server.admin }
        guard let parsed = Endpoint(parsing: admin) else {
            throw ValidationError("--admin must be host:port, e.g. 127.0.0.1:9901")
        }
        return parsed
    }

    /// The YAML document: the service's fields first, then its versions, each with its endpoints.
    static func document(_ status: JSONNode) -> Node {
        let service = status["service"]?.text ?? "?"
        var top: [(Node, Node)] = [
            ("name", Node(service)),
            ("state", Node(status["state"]?.text ?? "UNKNOWN")),
        ]
        if status["fail_open"]?.flag == true { top.append(("fail_open", Node("true", Tag(.bool)))) }
        top.append(("config_generation", scalar(status["generation"])))
        top.append(("versions_generation", scalar(status["versions_generation"])))
        if let change = status["versions_change"], change["actor"] != nil {
            top.append(("last_change", Node.mapping(Node.Mapping([
                ("time", scalar(change["time"])), ("by", scalar(change["actor"])), ("command", scalar(change["command"])),
            ]))))
        }
        if let reload = status["last_reload"], reload["outcome"]?.text == "error" {
            let errors = (reload["errors"]?.elements ?? []).compactMap(\.text).map { Node($0) }
            top.append(("reload_rejected", Node.mapping(Node.Mapping([
                ("since", scalar(reload["rejected_since"])),
                ("last_attempt", scalar(reload["time"])),
                ("errors", Node.sequence(Node.Sequence(errors))),
                ("note", Node("the running config is older than the files on disk since then; fix them (switchyard check) or run switchyard revert")),
            ]))))
        }
        var versions: [Node] = []
        for version in status["versions"]?.elements ?? [] {
            let name = version["name"]?.text ?? "?"
            var entry: [(Node, Node)] = [
                ("id", Node("\(service)/\(name)")),
                ("name", Node(name)),
                ("state", Node(version["state"]?.text ?? "UNKNOWN")),
                ("weight", scalar(version["traffic_percent"])),
                ("effective_weight", scalar(version["effective_traffic_percent"])),
                ("created_at", scalar(version["created_at"])),
                ("requests_in_flight", scalar(version["in_flight"])),
                ("on_unhealthy", scalar(version["on_unhealthy"])),
            ]
            if let check = version["health_check"], check.flag != false {
                entry.append(("health_check", Node("GET \(check["path"]?.text ?? "?") every \(check["interval_ms"]?.text ?? "?") ms")))
            } else {
                entry.append(("health_check", Node("off")))
            }
            entry.append(("endpoints", endpoints(version["addresses"])))
            if let grpc = version["grpc_addresses"]?.elements, !grpc.isEmpty {
                entry.append(("grpc_endpoints", endpoints(version["grpc_addresses"])))
            }
            versions.append(Node.mapping(Node.Mapping(entry)))
        }
        top.append(("versions", Node.sequence(Node.Sequence(versions))))
        return Node.mapping(Node.Mapping(top))
    }

    /// Addresses with their health, as YAML.
    private static func endpoints(_ addresses: JSONNode?) -> Node {
        let endpoints = (addresses?.elements ?? []).map { endpoint -> Node in
            var fields: [(Node, Node)] = [("address", scalar(endpoint["address"])), ("state", scalar(endpoint["state"]))]
            if let last = endpoint["last_check"]?.text { fields.append(("last_check", Node(last))) }
            if let failure = endpoint["last_failure"]?.text { fields.append(("last_failure", Node(failure))) }
            return Node.mapping(Node.Mapping(fields))
        }
        return Node.sequence(Node.Sequence(endpoints))
    }

    /// A JSON scalar as YAML: numbers stay numbers, null stays null.
    private static func scalar(_ node: JSONNode?) -> Node {
        switch node?.value {
        case .string(let text)?: return Node(text)
        case .number(let text)?: return Node(text, Tag(.float))
        case .bool(let flag)?: return Node(flag ? "true" : "false", Tag(.bool))
        default: return Node("null", Tag(.null))
        }
    }
}

extension JSONNode {
    subscript(key: String) -> JSONNode? {
        guard case .object(let members) = value else { return nil }
        return members.first { $0.key == key }?.node
    }

    var text: String? {
        switch value {
        case .string(let text), .number(let text): return text
        default: return nil
        }
    }

    var flag: Bool? {
        if case .bool(let flag) = value { return flag }
        return nil
    }

    var elements: [JSONNode]? {
        if case .array(let elements) = value { return elements }
        return nil
    }
}
