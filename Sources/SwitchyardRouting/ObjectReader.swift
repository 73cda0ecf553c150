/// Reads the fields of one JSON object into typed values, rejecting unknown fields: a typo in
/// a weights file must fail loudly, not be ignored.
struct ObjectReader {
    let file: String
    let path: String
    let node: JSONNode
    private let members: [JSONNode.Member]
    private var used: Set<String> = []

    init(_ node: JSONNode, file: String, path: String) throws(ConfigError) {
        guard case .object(let members) = node.value else {
            throw ConfigError(file: file, position: node.position, message: "\(path.isEmpty ? "the file" : path) must be an object, not \(node.typeName)")
        }
        self.file = file
        self.path = path
        self.node = node
        self.members = members
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ node: JSONNode, _ message: String) -> ConfigError {
        ConfigError(file: file, position: node.position, message: message)
    }

    /// The field's value without taking it (for the position of a later error).
    func peek(_ key: String) -> JSONNode? {
        members.first { $0.key == key }?.node
    }

    mutating func take(_ key: String) -> JSONNode? {
        used.insert(key)
        return members.first { $0.key == key }?.node
    }

    mutating func required(_ key: String) throws(ConfigError) -> JSONNode {
        guard let node = take(key) else {
            var message = "\(path.isEmpty ? "the file" : path) needs the field \"\(key)\""
            var position = self.node.position
            if let typo = members.first(where: { editDistance($0.key, key) <= 3 }) {
                message += " (did you mean \"\(key)\" instead of \"\(typo.key)\"?)"
                position = typo.keyPosition
            }
            throw ConfigError(file: file, position: position, message: message)
        }
        return node
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let node = take(key) else { return nil }
        guard case .string(let value) = node.value else { throw error(node, "\(fieldPath(key)) must be a string, not \(node.typeName)") }
        return value
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let node = take(key) else { return nil }
        guard case .bool(let value) = node.value else { throw error(node, "\(fieldPath(key)) must be true or false, not \(node.typeName)") }
        return value
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let node = take(key) else { return nil }
        guard case .number(let text) = node.value, let value = Int(text) else {
            throw error(node, "\(fieldPath(key)) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        guard range.contains(value) else {
            throw error(node, "\(fieldPath(key)) is \(value), it must be from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    mutating func object(_ key: String) throws(ConfigError) -> ObjectReader? {
        guard let node = take(key) else { return nil }
        return try ObjectReader(node, file: file, path: fieldPath(key))
    }

    mutating func array(_ key: String) throws(ConfigError) -> [JSONNode]? {
        guard let node = take(key) else { return nil }
        guard case .array(let elements) = node.value else { throw error(node, "\(fieldPath(key)) must be an array, not \(node.typeName)") }
        return elements
    }

    /// Fails on the first field nobody asked for, suggesting the closest known name.
    func finish() throws(ConfigError) {
        for member in members where !used.contains(member.key) {
            var message = "unknown field \"\(member.key)\" in \(path.isEmpty ? "the top-level object" : path)"
            if let suggestion = used.min(by: { editDistance($0, member.key) < editDistance($1, member.key) }),
               editDistance(suggestion, member.key) <= 3 {
                message += " (did you mean \"\(suggestion)\"?)"
            } else {
                message += "; known fields: \(used.sorted().joined(separator: ", "))"
            }
            throw ConfigError(file: file, position: member.keyPosition, message: message)
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
public func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in stride(from: 1, through: b.count, by: 1) {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
