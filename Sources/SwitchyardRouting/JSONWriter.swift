/// Building and writing `JSONNode`s, for the tools that write config files: a node keeps its
/// members in order and its numbers as their text, so what is read and written back is the
/// same bytes.
extension JSONNode {
    /// Where nodes built in memory are: nowhere in a file.
    public static let unplaced = SourcePosition(line: 0, column: 0)

    public init(_ value: Value) {
        self.init(value: value, position: Self.unplaced)
    }

    public static func string(_ text: String) -> JSONNode { JSONNode(.string(text)) }
    public static func integer(_ value: Int) -> JSONNode { JSONNode(.number(String(value))) }
    public static func strings(_ texts: [String]) -> JSONNode { JSONNode(.array(texts.map(string))) }

    /// An object with these members, in this order.
    public static func object(_ members: [(String, JSONNode)]) -> JSONNode {
        JSONNode(.object(members.map { JSONNode.Member(key: $0.0, keyPosition: unplaced, node: $0.1) }))
    }

    public var members: [Member] {
        if case .object(let members) = value { return members }
        return []
    }

    public subscript(member key: String) -> JSONNode? {
        members.first { $0.key == key }?.node
    }

    /// This object with `key` set to `node`: in its place when it is there, last when not.
    public func setting(_ key: String, to node: JSONNode) -> JSONNode {
        var members = self.members
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index] = Member(key: key, keyPosition: members[index].keyPosition, node: node)
        } else {
            members.append(Member(key: key, keyPosition: Self.unplaced, node: node))
        }
        return JSONNode(value: .object(members), position: position)
    }

    /// On one line: `{"name": "v1", "traffic_percent": 30}`.
    public var compactText: String {
        var out = ""
        write(to: &out)
        return out
    }

    /// Recursive, but no deeper than the parser lets a file nest (64 levels).
    private func write(to out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let text): out += text
        case .string(let text): out += JSONText.quote(text)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += ", " }
                element.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { out += ", " }
                out += JSONText.quote(member.key) + ": "
                member.node.write(to: &out)
            }
            out += "}"
        }
    }
}
