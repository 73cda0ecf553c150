import SwitchyardRouting

/// A versions file as its writers edit it: each version and each history entry kept as the
/// JSON it was written as, so a field the writer does not touch (a health check, TLS
/// settings) stays byte for byte what it was, and a revert writes back exactly what was there.
public struct VersionsDocument: Sendable {
    public var service: String
    public var generation: Int
    /// `{"time", "actor", "command"}` of the current generation; nil for a hand-written file.
    public var change: JSONNode?
    /// The version objects, in file order.
    public var versions: [JSONNode]
    /// Earlier states, newest first: `{"generation", "time", "actor", "command", "versions"}`.
    public var history: [JSONNode]

    public init(service: String, generation: Int = 0, change: JSONNode? = nil, versions: [JSONNode] = [], history: [JSONNode] = []) {
        self.service = service
        self.generation = generation
        self.change = change
        self.versions = versions
        self.history = history
    }

    /// Reads the shape of a versions file (an object, or Anyscale's bare versions array); what
    /// is in the versions is checked later, on the result, by `VersionsConfig.parse`.
    public init(parsing bytes: [UInt8], file: String) throws(ConfigError) {
        let root = try JSONParser.parse(bytes, file: file)
        func fail(_ node: JSONNode, _ message: String) -> ConfigError {
            ConfigError(file: file, position: node.position, message: message)
        }
        if case .array(let elements) = root.value {
            let base = file.split(separator: "/").last.map(String.init) ?? file
            self.init(service: base.split(separator: ".").first.map(String.init) ?? base, versions: elements)
            return
        }
        guard case .object = root.value else { throw fail(root, "the file must be an object {\"service\": …, \"versions\": […]}, not \(root.typeName)") }
        guard case .string(let service)? = root[member: "service"]?.value else { throw fail(root, "the file needs \"service\", a string") }
        guard case .array(let versions)? = root[member: "versions"]?.value else { throw fail(root, "the file needs \"versions\", an array") }
        var generation = 0
        if let node = root[member: "generation"] {
            guard case .number(let text) = node.value, let value = Int(text), value >= 0 else {
                throw fail(node, "generation must be a whole number from 0")
            }
            generation = value
        }
        var history: [JSONNode] = []
        if let node = root[member: "history"] {
            guard case .array(let entries) = node.value else { throw fail(node, "history must be an array") }
            history = entries
        }
        self.init(service: service, generation: generation, change: root[member: "change"], versions: versions, history: history)
    }

    /// The file's text: one version per line, history last.
    public var text: String {
        var out = "{\n  \"service\": \(JSONText.quote(service)),\n  \"generation\": \(generation),\n"
        if let change { out += "  \"change\": \(change.compactText),\n" }
        out += "  \"versions\": \(Self.lines(versions, indent: "  "))"
        if !history.isEmpty {
            out += ",\n  \"history\": [\n"
            out += history.map { "    " + Self.entryText($0, indent: "    ") }.joined(separator: ",\n")
            out += "\n  ]"
        }
        return out + "\n}\n"
    }

    public var bytes: [UInt8] { Array(text.utf8) }

    /// The audit log's line for this generation: who, when, what, and the versions.
    public var auditRecord: String {
        var members: [(String, JSONNode)] = [("generation", .integer(generation))]
        members += change?.members.map { ($0.key, $0.node) } ?? []
        members += [("service", .string(service)), ("versions", JSONNode(.array(versions)))]
        return JSONNode.object(members).compactText
    }

    /// A history entry on one line, but for its versions, one a line.
    static func entryText(_ entry: JSONNode, indent: String) -> String {
        let others = entry.members.filter { $0.key != "versions" }
        var out = JSONNode(.object(others)).compactText
        guard case .array(let versions)? = entry[member: "versions"]?.value else { return out }
        out.removeLast()
        out += (others.isEmpty ? "" : ", ") + "\"versions\": " + lines(versions, indent: indent) + "}"
        return out
    }

    private static func lines(_ elements: [JSONNode], indent: String) -> String {
        guard !elements.isEmpty else { return "[]" }
        return "[\n" + elements.map { indent + "  " + $0.compactText }.joined(separator: ",\n") + "\n\(indent)]"
    }

    /// The name of each version object, in order.
    public var versionNames: [String] { versions.map(Self.name) }

    static func name(_ version: JSONNode) -> String {
        if case .string(let name)? = version[member: "name"]?.value { return name }
        return ""
    }

    /// A version's share in hundredths of a percent, when it reads as one.
    static func share(_ version: JSONNode) -> Int? {
        guard case .number(let text)? = version[member: "traffic_percent"]?.value else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = Int(parts[0]) else { return nil }
        let fraction = parts.count == 2 ? String(parts[1].prefix(2)) : ""
        return whole * 100 + (Int(fraction) ?? 0) * (fraction.count == 1 ? 10 : 1)
    }
}
