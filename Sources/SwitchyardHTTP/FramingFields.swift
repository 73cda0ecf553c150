/// What the framing and connection fields of one head say, shared by requests and responses
/// (RFC 9112 §6 and §9.6).
struct FramingFields {
    let version: HTTPVersion
    var contentLength: Int?
    var sawTransferEncoding = false
    /// The last transfer coding seen so far is `chunked`.
    var chunkedLast = false
    var keepAlive: Bool
    var connectionUpgrade = false
    /// `Connection` lists names of further hop-by-hop fields.
    var hasConnectionOptions = false

    init(version: HTTPVersion) {
        self.version = version
        keepAlive = version == .http11
    }

    /// Takes one field into account; an error for malformed or conflicting framing.
    mutating func add(_ kind: KnownHeader, _ value: UnsafeRawBufferPointer) -> HTTPParseError? {
        switch kind {
        case .contentLength:
            guard let length = Self.parseContentLength(value) else {
                return .malformed("Content-Length must be one non-negative decimal number")
            }
            if let previous = contentLength, previous != length { return .malformed("Content-Length values differ") }
            contentLength = length
        case .transferEncoding:
            sawTransferEncoding = true
            guard let last = Self.transferCodingsEndInChunked(value, previouslyChunked: chunkedLast) else {
                return .malformed("Transfer-Encoding must end with chunked, and chunked only once")
            }
            chunkedLast = last
        case .connection:
            ASCII.forEachListElement(value) { option in
                if ASCII.equalsLowercased(option, "close") {
                    keepAlive = false
                } else if ASCII.equalsLowercased(option, "keep-alive") {
                    if version == .http10 { keepAlive = true }
                } else if ASCII.equalsLowercased(option, "upgrade") {
                    connectionUpgrade = true
                } else {
                    hasConnectionOptions = true
                }
            }
        default:
            break
        }
        return nil
    }

    /// A Content-Length value: digits, or a list of identical digit strings ("5, 5").
    static func parseContentLength(_ value: UnsafeRawBufferPointer) -> Int? {
        var result: Int?
        var valid = true
        var elements = 0
        ASCII.forEachListElement(value) { element in
            elements += 1
            guard valid, element.count <= 18 else { valid = false; return }
            var number = 0
            for byte in element {
                let digit = byte &- 48
                guard digit < 10 else { valid = false; return }
                number = number * 10 + Int(digit)
            }
            if let result, result != number { valid = false }
            result = number
        }
        // An empty element list, or stray commas around nothing, is not a length.
        guard valid, elements > 0 else { return nil }
        return result
    }

    /// Checks one Transfer-Encoding field: returns whether its last coding is `chunked`, or
    /// nil if `chunked` is followed by another coding (also across fields) or a coding is
    /// not a token.
    static func transferCodingsEndInChunked(_ value: UnsafeRawBufferPointer, previouslyChunked: Bool) -> Bool? {
        var lastIsChunked = previouslyChunked
        var valid = true
        var elements = 0
        ASCII.forEachListElement(value) { coding in
            elements += 1
            if lastIsChunked { valid = false }
            var name = coding
            if let semicolon = coding.firstIndex(of: UInt8(ascii: ";")) {
                name = UnsafeRawBufferPointer(rebasing: coding[0..<semicolon])
            }
            for byte in name where !ASCII.isTokenChar(byte) { valid = false }
            lastIsChunked = ASCII.equalsLowercased(name, "chunked")
        }
        guard valid, elements > 0 else { return nil }
        return lastIsChunked
    }
}
