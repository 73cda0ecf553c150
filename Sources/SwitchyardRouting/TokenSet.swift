/// The Bearer tokens accepted at once (several, so a rotation can overlap old and new).
///
/// A presented token is looked up in O(1), whatever the number of tokens: its keyed hash
/// (SipHash, with a key drawn at random when the process starts) picks a slot of an
/// open-addressed table, and only a stored token with the same 64-bit hash is compared, in
/// constant time. The key is secret, so how long a lookup takes tells a client nothing about
/// which stored tokens are near its guess.
public struct TokenSet: Sendable, Equatable {
    private let tokens: [[UInt8]]
    /// `hashes[i]` is `hash(tokens[i])`.
    private let hashes: [UInt64]
    /// Open addressing with linear probing: a token index plus one, or 0 for an empty slot.
    /// At most half full, so probes are short.
    private let slots: [UInt32]

    public var count: Int { tokens.count }

    /// Builds the set; repeated tokens count once.
    public init(tokens: [String]) {
        self.init(storage: tokens.map { Array($0.utf8) })
    }

    private init(storage: [[UInt8]]) {
        var capacity = 16
        while capacity < storage.count * 2 { capacity *= 2 }
        var slots = [UInt32](repeating: 0, count: capacity)
        var tokens: [[UInt8]] = []
        var hashes: [UInt64] = []
        tokens.reserveCapacity(storage.count)
        hashes.reserveCapacity(storage.count)
        for token in storage {
            let hash = token.withUnsafeBytes { Self.hash($0) }
            var slot = Int(truncatingIfNeeded: hash) & (capacity - 1)
            var duplicate = false
            while slots[slot] != 0 {
                let index = Int(slots[slot] - 1)
                if hashes[index] == hash && tokens[index] == token { duplicate = true }
                slot = (slot + 1) & (capacity - 1)
            }
            if duplicate { continue }
            slots[slot] = UInt32(tokens.count + 1)
            tokens.append(token)
            hashes.append(hash)
        }
        self.tokens = tokens
        self.hashes = hashes
        self.slots = slots
    }

    /// A copy that shares no storage with this one (see `RoutingSnapshot.workerCopy`).
    public func deepCopy() -> TokenSet {
        TokenSet(storage: tokens.map { token in token.map { $0 } })
    }

    /// Secret for the whole process, so hashes stay comparable across reloads (an open tunnel
    /// remembers only the hash of the token that opened it).
    private static let key: (UInt64, UInt64) = {
        var generator = SystemRandomNumberGenerator()
        return (generator.next(), generator.next())
    }()

    /// The keyed hash of a token (SipHash-1-3).
    public static func hash(_ token: UnsafeRawBufferPointer) -> UInt64 {
        SipHash.hash(token, key: key)
    }

    /// Whether `presented` is one of the tokens.
    public func contains(_ presented: UnsafeRawBufferPointer) -> Bool {
        let hash = Self.hash(presented)
        var matched = false
        forEachCandidate(hash) { index in
            matched = matched || tokens[index].withUnsafeBytes { Self.constantTimeEquals($0, presented) }
        }
        return matched
    }

    /// Whether a token whose `hash(_:)` is `hash` is still in the set.
    public func contains(hash: UInt64) -> Bool {
        var found = false
        forEachCandidate(hash) { _ in found = true }
        return found
    }

    /// Calls `body` with the index of every token whose hash equals `hash`.
    @inline(__always)
    private func forEachCandidate(_ hash: UInt64, _ body: (Int) -> Void) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 {
            let index = Int(slots[slot] - 1)
            if hashes[index] == hash { body(index) }
            slot = (slot + 1) & mask
        }
    }

    /// Compares over the whole stored length without an early exit.
    private static func constantTimeEquals(_ stored: UnsafeRawBufferPointer, _ presented: UnsafeRawBufferPointer) -> Bool {
        var difference: UInt8 = stored.count == presented.count ? 0 : 1
        for index in 0..<stored.count {
            difference |= stored[index] ^ (index < presented.count ? presented[index] : 0)
        }
        return difference == 0
    }

    /// Parses a tokens file: one token per line (LF or CRLF); blank lines and lines starting
    /// with `#` are ignored; surrounding spaces and tabs are trimmed.
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> TokenSet {
        var tokens: [[UInt8]] = []
        var lineNumber = 0
        var lineStart = 0
        while lineStart < bytes.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            var lower = lineStart
            var upper = lineEnd
            if upper > lower, bytes[upper - 1] == UInt8(ascii: "\r") { upper -= 1 }
            while lower < upper, bytes[lower] == 0x20 || bytes[lower] == 0x09 { lower += 1 }
            while upper > lower, bytes[upper - 1] == 0x20 || bytes[upper - 1] == 0x09 { upper -= 1 }
            defer { lineStart = lineEnd + 1 }
            if lower == upper || bytes[lower] == UInt8(ascii: "#") { continue }
            let line = bytes[lower..<upper]
            if let bad = line.firstIndex(where: { !isToken68Char($0) }) {
                throw ConfigError(
                    file: file, position: SourcePosition(line: lineNumber, column: bad - lineStart + 1),
                    message: "this line is not a valid Bearer token: only A-Z a-z 0-9 - . _ ~ + / and a trailing = are allowed")
            }
            guard line.count <= 4096 else {
                throw ConfigError(
                    file: file, position: SourcePosition(line: lineNumber, column: lower - lineStart + 1),
                    message: "this token is \(line.count) characters long; at most 4096 are allowed")
            }
            tokens.append(Array(line))
        }
        guard !tokens.isEmpty else {
            throw ConfigError(file: file, position: nil, message: "the tokens file holds no token; add one token per line")
        }
        return TokenSet(storage: tokens)
    }

    static func isToken68Char(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"),
             UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    /// The token of an `Authorization: Bearer <token>` value, or nil for another scheme.
    public static func bearerToken(in value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard value.count > 7 else { return nil }
        let scheme: StaticString = "bearer"
        for offset in 0..<6 {
            let byte = value[offset]
            guard (byte &- 65 < 26 ? byte | 0x20 : byte) == scheme.utf8Start[offset] else { return nil }
        }
        var index = 6
        guard value[index] == 0x20 else { return nil }
        while index < value.count, value[index] == 0x20 { index += 1 }
        guard index < value.count else { return nil }
        return UnsafeRawBufferPointer(rebasing: value[index...])
    }
}
