import Glibc

/// What the writers of a versions file (`switchyard deploy`, `revert`, the admin API) record in
/// it beside the versions: a generation, who made it, and the states before it.
///
///     {"service": "demo", "generation": 4,
///      "change": {"time": "2026-12-04T03:40:00.000Z", "actor": "ana@build-7", "command": "deploy --versions …"},
///      "versions": [...],
///      "history": [{"generation": 3, "time": …, "actor": …, "command": …, "versions": [...]}, ...]}
///
/// The proxy validates all of it and routes with `versions` alone.
extension VersionsConfig {
    /// Who made a generation, when, and with what command.
    public struct Change: Sendable, Equatable {
        /// RFC 3339, UTC.
        public let time: String
        /// `user@host`, or `admin-api`.
        public let actor: String
        /// The command as given (`deploy --versions …`, `revert to 3`).
        public let command: String

        public init(time: String, actor: String, command: String) {
            self.time = time
            self.actor = actor
            self.command = command
        }
    }

    /// An earlier state of the file.
    public struct HistoryEntry: Sendable, Equatable {
        public let generation: Int
        /// nil when that state was written by hand.
        public let change: Change?
        public let versions: [Version]
    }

    /// The most entries a writer keeps in `history`, and the most bytes they may take.
    public static let historyLimit = (entries: 20, bytes: 256 << 10)
}

/// The writer's fields of a versions file, parsed from its top-level object.
struct WriterRecord {
    var generation = 0
    var change: VersionsConfig.Change?
    var history: [VersionsConfig.HistoryEntry] = []

    static func parse(
        _ reader: inout ObjectReader, file: String, defaults: VersionsConfig.Defaults, errors: inout [ConfigError]
    ) -> WriterRecord {
        var record = WriterRecord()
        do {
            record.generation = try reader.integer("generation", in: 0...Int(Int32.max)) ?? 0
            if let node = reader.take("change") {
                record.change = try parseChange(node, file: file, path: "change")
            }
            if let entries = try reader.array("history") {
                if entries.count > VersionsConfig.historyLimit.entries {
                    errors.append(reader.error(reader.peek("history") ?? reader.node,
                        "history has \(entries.count) entries; writers keep \(VersionsConfig.historyLimit.entries) at most"))
                }
                for (index, entry) in entries.prefix(VersionsConfig.historyLimit.entries).enumerated() {
                    if let parsed = parseEntry(entry, file: file, path: "history[\(index)]", defaults: defaults, errors: &errors) {
                        record.history.append(parsed)
                    }
                }
                if let problem = orderProblem(record) {
                    errors.append(reader.error(reader.peek("history") ?? reader.node, problem))
                }
            }
        } catch {
            errors.append(error)
        }
        return record
    }

    /// History runs from the newest state to the oldest, each older than the file's generation.
    private static func orderProblem(_ record: WriterRecord) -> String? {
        var above = record.generation
        for (index, entry) in record.history.enumerated() {
            if entry.generation >= above {
                return "history[\(index)] has generation \(entry.generation), which must be below \(above): newest first, each below the file's generation"
            }
            above = entry.generation
        }
        return nil
    }

    private static func parseChange(_ node: JSONNode, file: String, path: String) throws(ConfigError) -> VersionsConfig.Change {
        var reader = try ObjectReader(node, file: file, path: path)
        let change = try fields(of: &reader, path: path)
        try reader.finish()
        return change
    }

    /// `time`, `actor` and `command`, each a non-empty string.
    private static func fields(of reader: inout ObjectReader, path: String) throws(ConfigError) -> VersionsConfig.Change {
        var values: [String] = []
        for key in ["time", "actor", "command"] {
            let node = try reader.required(key)
            guard case .string(let text) = node.value, !text.isEmpty, text.utf8.count <= 4096 else {
                throw reader.error(node, "\(path).\(key) must be a non-empty string of 4096 bytes at most")
            }
            if key == "time" && !Timestamp.isValid(text) {
                throw reader.error(node, "\(path).time is \"\(text)\"; write an RFC 3339 time in UTC, e.g. 2026-12-04T03:40:00.000Z")
            }
            values.append(text)
        }
        return VersionsConfig.Change(time: values[0], actor: values[1], command: values[2])
    }

    private static func parseEntry(
        _ node: JSONNode, file: String, path: String, defaults: VersionsConfig.Defaults, errors: inout [ConfigError]
    ) -> VersionsConfig.HistoryEntry? {
        let before = errors.count
        do throws(ConfigError) {
            var reader = try ObjectReader(node, file: file, path: path)
            guard let generation = try reader.integer("generation", in: 0...Int(Int32.max)) else {
                throw reader.error(node, "\(path) needs the field \"generation\" (a whole number)")
            }
            // A state written by hand has no time, actor or command.
            var change: VersionsConfig.Change?
            if reader.peek("actor") != nil { change = try fields(of: &reader, path: path) }
            let versionsNode = try reader.required("versions")
            try reader.finish()
            guard case .array(let elements) = versionsNode.value else {
                throw reader.error(versionsNode, "\(path).versions must be an array of version objects, not \(versionsNode.typeName)")
            }
            let versions = VersionsConfig.parseVersionList(
                elements, at: versionsNode.position, file: file, path: "\(path).versions", defaults: defaults, errors: &errors)
            guard errors.count == before else { return nil }
            return VersionsConfig.HistoryEntry(generation: generation, change: change, versions: versions)
        } catch {
            errors.append(error)
            return nil
        }
    }
}

/// RFC 3339 times in UTC as the writers stamp them: `2026-12-04T03:40:00.123Z`.
public enum Timestamp {
    /// The current time, to the millisecond.
    public static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }

    /// Whether `text` is `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with fields in range.
    public static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.count <= 40, bytes.last == UInt8(ascii: "Z") else { return false }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
                value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            }
            return value
        }
        let separators: [(Int, Character)] = [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":")]
        guard separators.allSatisfy({ bytes[$0.0] == $0.1.asciiValue }),
              number(0..<4) != nil, let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return false }
        if bytes.count == 20 { return true }
        return bytes[19] == UInt8(ascii: ".") && bytes.count > 21 && number(20..<(bytes.count - 1)) != nil
    }
}
