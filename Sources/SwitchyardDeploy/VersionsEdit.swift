import SwitchyardRouting

/// What a deploy asks of the versions file, from the command line, the config YAMLs or the
/// admin API.
public struct DeployRequest: Sendable {
    /// The split to go to; nil keeps the current weights (a new version then joins dark).
    public var traffic: TrafficRequest?
    /// The service it is meant for (`-n`); nil: whatever the file says.
    public var service: String?
    /// Versions given endpoints (`--endpoint NAME=ADDR`, a YAML's `endpoints`): these replace
    /// the version's list.
    public var endpoints: [String: [String]] = [:]
    public var grpcEndpoints: [String: [String]] = [:]
    /// Versions a config YAML describes, in the order given (added dark without `--versions`).
    public var described: [String] = []

    public init(traffic: TrafficRequest? = nil, service: String? = nil) {
        self.traffic = traffic
        self.service = service
    }
}

/// What one write changes, for the user to read before and after.
public struct EditSummary: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        public let name: String
        /// Shares in hundredths of a percent; nil where the version is not there.
        public let before: Int?
        public let after: Int?
        public let endpointsChanged: Bool
    }

    public var lines: [Line] = []

    public var removed: [String] { lines.filter { $0.after == nil }.map(\.name) }
    public var added: [String] { lines.filter { $0.before == nil }.map(\.name) }
    public var isEmpty: Bool { lines.allSatisfy { $0.before == $0.after && !$0.endpointsChanged } }

    /// `v1: 30% → 10%`, `v3: added at 30%`, `v2: removed (was 30%; requests in flight finish)`.
    public var text: [String] {
        lines.map { line in
            switch (line.before, line.after) {
            case (nil, let after?): return "\(line.name): added at \(percent(after))"
            case (let before?, nil): return "\(line.name): removed (was \(percent(before)); requests in flight finish)"
            case (let before?, let after?):
                let weights = before == after ? "\(percent(after)) (unchanged)" : "\(percent(before)) → \(percent(after))"
                return "\(line.name): \(weights)\(line.endpointsChanged ? ", new endpoints" : "")"
            case (nil, nil): return line.name
            }
        }
    }

    private func percent(_ basisPoints: Int) -> String { VersionsConfig.percentText(basisPoints) + "%" }

    static func between(_ before: [JSONNode], _ after: [JSONNode]) -> EditSummary {
        var summary = EditSummary()
        let old = Dictionary(before.map { (VersionsDocument.name($0), $0) }, uniquingKeysWith: { first, _ in first })
        for version in after {
            let name = VersionsDocument.name(version)
            let previous = old[name]
            let moved = previous.map { endpointsText($0) != endpointsText(version) } ?? false
            summary.lines.append(Line(name: name, before: previous.flatMap(VersionsDocument.share), after: VersionsDocument.share(version), endpointsChanged: moved))
        }
        let kept = Set(after.map(VersionsDocument.name))
        for version in before where !kept.contains(VersionsDocument.name(version)) {
            summary.lines.append(Line(name: VersionsDocument.name(version), before: VersionsDocument.share(version), after: nil, endpointsChanged: false))
        }
        return summary
    }

    private static func endpointsText(_ version: JSONNode) -> String {
        (version[member: "endpoints"]?.compactText ?? "") + (version[member: "grpc_endpoints"]?.compactText ?? "")
    }
}

/// A deploy or revert that cannot be written, with the exit status it means.
public struct DeployError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// Bad input: the request, the file, or the result (exit 2).
        case invalid
        /// Something outside failed (Ray, the file system) (exit 1).
        case failed
        /// The file changed since it was read (exit 3).
        case conflict
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    public var exitCode: Int32 {
        switch kind {
        case .invalid: return 2
        case .failed: return 1
        case .conflict: return 3
        }
    }
}

/// Who writes a generation, when, and with what command.
public struct Author: Sendable {
    public let actor: String
    public let command: String
    public let time: String

    public init(actor: String, command: String, time: String = Timestamp.now()) {
        self.actor = actor
        self.command = command
        self.time = time
    }

    var record: JSONNode {
        .object([("time", .string(time)), ("actor", .string(actor)), ("command", .string(command))])
    }
}

extension VersionsDocument {
    /// The document after `request`: weights set, versions added (with `created_at`) and
    /// removed, endpoints replaced; one generation on, the state before it first in history
    /// unless `recordingCurrent` is false (a state the proxy rejected has no place there).
    public func deploying(_ request: DeployRequest, by author: Author, recordingCurrent: Bool = true) throws(DeployError) -> (VersionsDocument, EditSummary) {
        if let service = request.service, service != self.service {
            throw DeployError(.invalid, "-n \(service) does not match the service \"\(self.service)\" of this versions file; give -n \(self.service)")
        }
        let current = Dictionary(versions.map { (Self.name($0), $0) }, uniquingKeysWith: { first, _ in first })
        var names = request.traffic?.shares.map(\.name) ?? versionNames
        if request.traffic == nil {
            names += request.described.filter { !names.contains($0) }
        } else if let stray = (Array(request.endpoints.keys) + request.grpcEndpoints.keys + request.described)
            .first(where: { !names.contains($0) }) {
            throw DeployError(.invalid, """
                version "\(stray)" is given endpoints or a config file but is not in --versions \
                (\(names.joined(separator: ", "))); add it to --versions or leave it out
                """)
        }
        var next: [JSONNode] = []
        for name in names {
            var version: JSONNode
            if let existing = current[name] {
                version = existing
            } else {
                guard let endpoints = request.endpoints[name] else {
                    throw DeployError(.invalid, """
                        version "\(name)" is new and has no endpoints; add --endpoint \(name)=HOST:PORT \
                        (its Ray Serve cluster's HTTP proxy, port 8000) or "endpoints" in its config file
                        """)
                }
                version = .object([("name", .string(name)), ("traffic_percent", .integer(0)), ("endpoints", .strings(endpoints))])
            }
            let share = request.traffic?.share(of: name) ?? (current[name] == nil ? 0 : nil)
            if let share { version = version.setting("traffic_percent", to: JSONNode(.number(VersionsConfig.percentText(share)))) }
            if let endpoints = request.endpoints[name] { version = version.setting("endpoints", to: .strings(endpoints)) }
            if let endpoints = request.grpcEndpoints[name] { version = version.setting("grpc_endpoints", to: .strings(endpoints)) }
            if version[member: "created_at"] == nil { version = version.setting("created_at", to: .string(author.time)) }
            next.append(version)
        }
        let summary = EditSummary.between(versions, next)
        return (advanced(to: next, by: author, recordingCurrent: recordingCurrent), summary)
    }

    /// The document with the versions of generation `target` (default: the one before this),
    /// exactly as they were, as a new generation.
    public func reverting(to target: Int?, by author: Author) throws(DeployError) -> (VersionsDocument, EditSummary) {
        guard !history.isEmpty else {
            throw DeployError(.invalid, "the versions file has no history to revert to (generation \(generation)); only changes written by switchyard are kept")
        }
        let wanted = target ?? Self.generation(of: history[0])
        if wanted == generation {
            throw DeployError(.invalid, "generation \(wanted) is the current one; nothing to revert")
        }
        guard let entry = history.first(where: { Self.generation(of: $0) == wanted }),
              case .array(let versions)? = entry[member: "versions"]?.value else {
            let known = history.map { String(Self.generation(of: $0)) }.joined(separator: ", ")
            throw DeployError(.invalid, "generation \(wanted) is not in the history; it holds generations \(known) (see switchyard history)")
        }
        let summary = EditSummary.between(self.versions, versions)
        return (advanced(to: versions, by: author), summary)
    }

    /// One generation on: `versions` in force, this state first in history, history bounded.
    func advanced(to versions: [JSONNode], by author: Author, recordingCurrent: Bool = true) -> VersionsDocument {
        var entry: [(String, JSONNode)] = [("generation", .integer(generation))]
        entry += change?.members.map { ($0.key, $0.node) } ?? []
        entry.append(("versions", JSONNode(.array(self.versions))))
        let kept = self.history.prefix(VersionsConfig.historyLimit.entries - (recordingCurrent ? 1 : 0))
        var history = recordingCurrent ? [JSONNode.object(entry)] + kept : Array(kept)
        while history.count > 1, history.reduce(0, { $0 + Self.entryText($1, indent: "    ").utf8.count }) > VersionsConfig.historyLimit.bytes {
            history.removeLast()
        }
        return VersionsDocument(service: service, generation: generation + 1, change: author.record, versions: versions, history: history)
    }

    /// The generation a revert without `--to` goes back to.
    public var previousGeneration: Int? { history.first.map(Self.generation(of:)) }

    static func generation(of entry: JSONNode) -> Int {
        if case .number(let text)? = entry[member: "generation"]?.value { return Int(text) ?? -1 }
        return -1
    }
}

extension VersionsDocument {
    /// `switchyard history`: each generation, newest first, with when, who, the command, the
    /// weights, and what changed from the one before it.
    public var historyLines: [String] {
        struct State {
            let generation: Int
            let change: JSONNode?
            let versions: [JSONNode]
        }
        var states = [State(generation: generation, change: change, versions: versions)]
        for entry in history {
            guard case .array(let versions)? = entry[member: "versions"]?.value else { continue }
            states.append(State(generation: Self.generation(of: entry), change: entry[member: "actor"] == nil ? nil : entry, versions: versions))
        }
        var lines: [String] = []
        for (index, state) in states.enumerated() {
            func field(_ key: String) -> String? {
                if case .string(let text)? = state.change?[member: key]?.value { return text }
                return nil
            }
            let who = field("actor").map { "\(field("time") ?? "?")  \($0)  \(field("command") ?? "")" } ?? "written by hand"
            lines.append("generation \(state.generation)\(index == 0 ? " (current)" : "")  \(who)")
            let weights = state.versions.map { version in
                "\(Self.name(version)) \(Self.share(version).map { VersionsConfig.percentText($0) } ?? "?")%"
            }
            lines.append("  weights: \(weights.joined(separator: ", "))")
            if index + 1 < states.count {
                let changes = EditSummary.between(states[index + 1].versions, state.versions)
                let text = zip(changes.lines, changes.text).filter { $0.0.before != $0.0.after || $0.0.endpointsChanged }.map(\.1)
                lines.append("  changed: \(text.isEmpty ? "nothing in the versions" : text.joined(separator: "; "))")
            }
        }
        return lines
    }
}

extension DeployRequest {
    /// The admin API's `POST /v1/deploy` body:
    ///
    ///     {"versions": [{"name": "v1", "traffic_percent": 90}, {"name": "v2", "traffic_percent": 10}],
    ///      "endpoints": {"v2": ["10.0.2.7:8000"]}, "grpc_endpoints": {"v2": ["10.0.2.7:9000"]}}
    ///
    /// `versions` is Anyscale's array, as `--versions` takes it; `service`, when given, must be
    /// the file's.
    public init(body: [UInt8]) throws(DeployError) {
        let source = "POST /v1/deploy"
        let root: JSONNode
        do {
            root = try JSONParser.parse(body, file: source)
        } catch {
            throw DeployError(.invalid, error.description)
        }
        guard case .object(let members) = root.value else {
            throw DeployError(.invalid, "\(source): the body must be an object {\"versions\": [...], \"endpoints\": {...}}")
        }
        self.init()
        for member in members {
            switch member.key {
            case "versions":
                do {
                    traffic = try TrafficRequest.parse(member.node, source: source)
                } catch {
                    throw DeployError(.invalid, error.description)
                }
            case "service":
                guard case .string(let name) = member.node.value else { throw DeployError(.invalid, "\(source): service must be a string") }
                service = name
            case "endpoints", "grpc_endpoints":
                let parsed = try Self.endpoints(member.node, field: member.key, source: source)
                if member.key == "endpoints" { endpoints = parsed } else { grpcEndpoints = parsed }
            default:
                throw DeployError(.invalid, "\(source):\(member.keyPosition): unknown field \"\(member.key)\"; it takes versions, endpoints, grpc_endpoints and service")
            }
        }
        if traffic == nil && endpoints.isEmpty && grpcEndpoints.isEmpty {
            throw DeployError(.invalid, "\(source): nothing to deploy: give \"versions\" (and \"endpoints\" for new versions)")
        }
    }

    /// `{"v3": ["host:port", …]}`.
    private static func endpoints(_ node: JSONNode, field: String, source: String) throws(DeployError) -> [String: [String]] {
        guard case .object(let members) = node.value else {
            throw DeployError(.invalid, "\(source): \(field) must be an object {\"version\": [\"host:port\", ...]}")
        }
        var result: [String: [String]] = [:]
        for member in members {
            guard VersionsConfig.isValidName(member.key), case .array(let elements) = member.node.value, !elements.isEmpty else {
                throw DeployError(.invalid, "\(source):\(member.keyPosition): \(field).\(member.key) must be a non-empty array of \"host:port\" strings")
            }
            var addresses: [String] = []
            for element in elements {
                guard case .string(let text) = element.value, VersionsConfig.isValidEndpoint(text) else {
                    throw DeployError(.invalid, "\(source):\(element.position): \(field).\(member.key) holds what is not a \"host:port\" address")
                }
                addresses.append(text)
            }
            result[member.key] = addresses
        }
        return result
    }
}

extension DeployRequest {
    /// The `POST /v1/deploy` body that asks for this request.
    public var body: [UInt8] {
        var members: [(String, JSONNode)] = []
        if let service { members.append(("service", .string(service))) }
        if let traffic {
            let shares = traffic.shares.map { share in
                JSONNode.object([("name", .string(share.name)), ("traffic_percent", JSONNode(.number(VersionsConfig.percentText(share.basisPoints))))])
            }
            members.append(("versions", JSONNode(.array(shares))))
        }
        for (field, map) in [("endpoints", endpoints), ("grpc_endpoints", grpcEndpoints)] where !map.isEmpty {
            members.append((field, .object(map.keys.sorted().map { ($0, .strings(map[$0]!)) })))
        }
        return Array(JSONNode.object(members).compactText.utf8)
    }
}
