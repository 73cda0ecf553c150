/// The Bearer tokens accepted at once (several, so a rotation can overlap old and new).
public struct TokenSet: Sendable, Equatable {
    private let tokens: [[UInt8]]

    public var count: Int { tokens.count }

    public init(tokens: [String]) {
        self.tokens = tokens.map { Array($0.utf8) }
    }

    /// A copy that shares no storage with this one (see `RoutingSnapshot.workerCopy`).
    public func deepCopy() -> TokenSet {
        TokenSet(storage: tokens.map { token in token.map { $0 } })
    }

    private init(storage: [[UInt8]]) {
        self.tokens = storage
    }

    /// Parses a tokens file: one token per line; blank lines and lines starting with `#` are
    /// ignored; surrounding whitespace is trimmed.
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> TokenSet {
        var tokens: [String] = []
        let text = String(decoding: bytes, as: UTF8.self)
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine.trimmingWhitespace())
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard line.utf8.allSatisfy(isToken68Char), line.utf8.count <= 4096 else {
                throw ConfigError(file: file, position: SourcePosition(line: index + 1, column: 1),
                                  message: "this line is not a valid Bearer token (allowed: A-Z a-z 0-9 - . _ ~ + / and trailing =, at most 4096 characters)")
            }
            if !tokens.contains(line) { tokens.append(line) }
        }
        guard !tokens.isEmpty else {
            throw ConfigError(file: file, position: nil, message: "the tokens file holds no token; add one token per line")
        }
        return TokenSet(tokens: tokens)
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

    /// Whether `presented` is one of the tokens. Compares against every token over its whole
    /// length without early exit, so the time taken does not depend on how much of a guess
    /// was right.
    public func contains(_ presented: UnsafeRawBufferPointer) -> Bool {
        var matched: UInt8 = 0
        for token in tokens {
            var difference = UInt(bitPattern: token.count ^ presented.count) != 0 ? UInt8(1) : 0
            token.withUnsafeBufferPointer { stored in
                for index in 0..<stored.count {
                    let byte = index < presented.count ? presented[index] : 0
                    difference |= stored[index] ^ byte
                }
            }
            matched |= difference == 0 ? 1 : 0
        }
        return matched != 0
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

extension Substring {
    func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return result
    }
}
