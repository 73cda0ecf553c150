/// Decodes a message body in place, in the buffer it arrived in (RFC 9112 §6 and §7.1).
///
/// Content-Length and close-delimited bodies are opaque: the framer only counts them. A chunked
/// body is decoded: chunk data is moved down over the framing in front of it, so the caller is
/// left with plain data followed by the trailer section, and sends it with chunk framing of its
/// own. The peer's framing is never relayed: a proxy that forwards framing it read differently
/// from the next hop can be made to smuggle requests into other clients' connections.
///
///     chunked-body    = *chunk last-chunk trailer-section CRLF
///     chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
///     chunk-size      = 1*HEXDIG
///     last-chunk      = 1*("0") [ chunk-ext ] CRLF
///     chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
///     chunk-ext-name  = token
///     chunk-ext-val   = token / quoted-string
///     trailer-section = *( field-line CRLF )
///     field-line      = field-name ":" OWS field-value OWS
///
/// Strict: CRLF only (a bare LF or CR anywhere in the framing is an error), no whitespace
/// around the chunk size other than the BWS the grammar allows before ";", trailer fields
/// checked like header fields (no obs-fold, no control characters). Bounded: at most
/// `maxChunkSizeDigits` digits, `maxExtensionBytes` of extensions per chunk line and
/// `maxTrailerBytes` of trailer fields.
public struct BodyFramer: Sendable {
    /// What one call to `decode` found. The output bytes are `[skipped, skipped + data + trailer)`
    /// of the input; everything else of the first `consumed` bytes was framing.
    public struct Decoded: Equatable, Sendable {
        /// Bytes of the input that belonged to the body; what follows is not this body's.
        public var consumed = 0
        /// Framing bytes at the front, before the first output byte.
        public var skipped = 0
        /// Body data bytes, starting at `skipped`.
        public var data = 0
        /// Trailer section bytes right after the data (chunked only): the validated field lines
        /// when trailers are kept, then the final CRLF.
        public var trailer = 0
        /// The body is complete.
        public var complete = false

        public init(consumed: Int = 0, skipped: Int = 0, data: Int = 0, trailer: Int = 0, complete: Bool = false) {
            self.consumed = consumed
            self.skipped = skipped
            self.data = data
            self.trailer = trailer
            self.complete = complete
        }
    }

    public enum Step: Equatable, Sendable {
        case decoded(Decoded)
        case error(HTTPParseError)
    }

    private enum Phase: Sendable {
        case remaining
        case untilClose
        case done
        case size
        /// BWS after the chunk size: only ";" may follow.
        case extensionSpaceBeforeSemicolon
        case extensionSpaceBeforeName
        case extensionName
        case extensionSpaceAfterName
        case extensionSpaceBeforeValue
        case extensionToken
        case extensionQuoted
        case extensionQuotedPair
        case extensionAfterQuoted
        /// BWS after a value: only ";" may follow.
        case extensionSpaceAfterValue
        case sizeLF
        case data
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerName
        case trailerValue
        case trailerLF
        case finalLF
    }

    /// Most hex digits in a chunk size (15 digits stay far below `Int.max`).
    public static let maxChunkSizeDigits = 15
    /// Most bytes of chunk extensions on one chunk line.
    public static let maxExtensionBytes = 4096
    /// Most bytes of trailer field lines (with their CRLFs) in one body.
    public static let maxTrailerBytes = 16384

    private var phase: Phase
    /// Bytes still expected: of the Content-Length body, of the chunk's data, or the value of
    /// the chunk size being read.
    private var value = 0
    /// Digits of the chunk size, extension bytes of the line, or trailer bytes so far.
    private var count = 0
    private let keepTrailers: Bool

    /// `keepTrailers`: keep the trailer fields in the output (they are dropped when the
    /// recipient did not ask for them); the final CRLF is always kept.
    public init(_ framing: BodyFraming, keepTrailers: Bool = true) {
        self.keepTrailers = keepTrailers
        switch framing {
        case .none: phase = .done
        case .contentLength(let length):
            phase = length > 0 ? .remaining : .done
            value = length
        case .chunked: phase = .size
        case .untilClose: phase = .untilClose
        }
    }

    public var isComplete: Bool {
        if case .done = phase { return true }
        return false
    }

    /// Decodes bytes from the front of `bytes`, moving output bytes down over framing.
    public mutating func decode(_ bytes: UnsafeMutableRawBufferPointer) -> Step {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return .decoded(Decoded(complete: isComplete)) }
        switch phase {
        case .done:
            return .decoded(Decoded(complete: true))
        case .untilClose:
            return .decoded(Decoded(consumed: bytes.count, data: bytes.count))
        case .remaining:
            let take = min(value, bytes.count)
            value -= take
            if value == 0 { phase = .done }
            return .decoded(Decoded(consumed: take, data: take, complete: value == 0))
        default:
            return decodeChunked(base, bytes.count)
        }
    }

    // The chunked decoder: one pass, one byte of framing at a time, chunk data in runs.
    // `index` reads, `out` writes (out <= index always, so output never overtakes input);
    // `out` is -1 until the first output byte, whose position becomes `skipped`.
    private mutating func decodeChunked(_ base: UnsafeMutableRawPointer, _ length: Int) -> Step {
        var index = 0
        var out = -1
        var result = Decoded()

        @inline(__always)
        func emit(_ byte: UInt8, at index: Int, trailer: Bool) {
            if out < 0 {
                out = index
                result.skipped = index
            }
            base.storeBytes(of: byte, toByteOffset: out, as: UInt8.self)
            out += 1
            if trailer { result.trailer += 1 } else { result.data += 1 }
        }

        while index < length {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            switch phase {
            case .data:
                let take = min(value, length - index)
                if out < 0 {
                    out = index
                    result.skipped = index
                } else if out != index {
                    (base + out).copyMemory(from: base + index, byteCount: take)
                }
                out += take
                result.data += take
                index += take
                value -= take
                if value == 0 { phase = .dataCR }
                continue
            case .size:
                if let digit = Self.hexValue(byte) {
                    guard count < Self.maxChunkSizeDigits else { return .error(.malformed("chunk size has too many digits")) }
                    value = value << 4 | digit
                    count += 1
                } else if count == 0 {
                    return .error(.malformed("a chunk size must start with a hex digit"))
                } else if byte == ASCII.cr {
                    phase = .sizeLF
                } else if byte == UInt8(ascii: ";") {
                    count = 0
                    phase = .extensionSpaceBeforeName
                } else if Self.isBlank(byte) {
                    count = 0
                    phase = .extensionSpaceBeforeSemicolon
                } else {
                    return .error(.malformed("bad character after a chunk size"))
                }
            case .extensionSpaceBeforeSemicolon, .extensionSpaceAfterValue, .extensionSpaceBeforeName, .extensionName,
                 .extensionToken, .extensionSpaceAfterName, .extensionSpaceBeforeValue, .extensionQuoted,
                 .extensionQuotedPair, .extensionAfterQuoted:
                guard count < Self.maxExtensionBytes else { return .error(.malformed("chunk extensions too long")) }
                count += 1
                if let error = advanceExtension(byte) { return .error(error) }
            case .sizeLF:
                guard byte == ASCII.lf else { return .error(.malformed("a chunk size line must end with CRLF")) }
                count = 0
                phase = value == 0 ? .trailerLineStart : .data
            case .dataCR:
                guard byte == ASCII.cr else { return .error(.malformed("chunk data must be followed by CRLF")) }
                phase = .dataLF
            case .dataLF:
                guard byte == ASCII.lf else { return .error(.malformed("chunk data must be followed by CRLF")) }
                value = 0
                count = 0
                phase = .size
            case .trailerLineStart:
                if byte == ASCII.cr {
                    emit(byte, at: index, trailer: true)
                    phase = .finalLF
                } else if ASCII.isTokenChar(byte) {
                    guard count < Self.maxTrailerBytes else { return .error(.malformed("trailer section too large")) }
                    count += 1
                    if keepTrailers { emit(byte, at: index, trailer: true) }
                    phase = .trailerName
                } else {
                    return .error(.malformed("a trailer line must start with a field name"))
                }
            case .trailerName, .trailerValue, .trailerLF:
                guard count < Self.maxTrailerBytes else { return .error(.malformed("trailer section too large")) }
                count += 1
                switch phase {
                case .trailerName:
                    if byte == ASCII.colon {
                        phase = .trailerValue
                    } else if !ASCII.isTokenChar(byte) {
                        return .error(.malformed("a trailer field name contains a character that is not allowed"))
                    }
                case .trailerValue:
                    if byte == ASCII.cr {
                        phase = .trailerLF
                    } else if !Self.isFieldValueByte(byte) {
                        return .error(.malformed("a trailer field value contains a control character"))
                    }
                default:
                    guard byte == ASCII.lf else { return .error(.malformed("trailer lines must end with CRLF")) }
                    phase = .trailerLineStart
                }
                if keepTrailers { emit(byte, at: index, trailer: true) }
            case .finalLF:
                guard byte == ASCII.lf else { return .error(.malformed("a chunked body must end with CRLF")) }
                emit(byte, at: index, trailer: true)
                phase = .done
                result.consumed = index + 1
                result.complete = true
                if out < 0 { result.skipped = result.consumed }
                return .decoded(result)
            case .remaining, .untilClose, .done:
                preconditionFailure("not a chunked phase")
            }
            index += 1
        }
        result.consumed = index
        if out < 0 { result.skipped = index }
        return .decoded(result)
    }

    /// One byte of a chunk extension (the grammar in the type's comment); CR ends the line.
    private mutating func advanceExtension(_ byte: UInt8) -> HTTPParseError? {
        let semicolon = UInt8(ascii: ";")
        let equals = UInt8(ascii: "=")
        switch phase {
        case .extensionSpaceBeforeSemicolon, .extensionSpaceAfterValue:
            if byte == semicolon {
                phase = .extensionSpaceBeforeName
            } else if !Self.isBlank(byte) {
                return .malformed("only ';' may follow whitespace in a chunk line")
            }
        case .extensionSpaceBeforeName:
            if ASCII.isTokenChar(byte) {
                phase = .extensionName
            } else if !Self.isBlank(byte) {
                return .malformed("a chunk extension needs a name")
            }
        case .extensionName, .extensionToken:
            if ASCII.isTokenChar(byte) {
                break
            } else if byte == ASCII.cr {
                phase = .sizeLF
            } else if byte == semicolon {
                phase = .extensionSpaceBeforeName
            } else if byte == equals, phase == .extensionName {
                phase = .extensionSpaceBeforeValue
            } else if Self.isBlank(byte) {
                phase = phase == .extensionName ? .extensionSpaceAfterName : .extensionSpaceAfterValue
            } else {
                return .malformed("bad character in a chunk extension")
            }
        case .extensionSpaceAfterName:
            if byte == equals {
                phase = .extensionSpaceBeforeValue
            } else if byte == semicolon {
                phase = .extensionSpaceBeforeName
            } else if !Self.isBlank(byte) {
                return .malformed("bad character in a chunk extension")
            }
        case .extensionSpaceBeforeValue:
            if byte == ASCII.quote {
                phase = .extensionQuoted
            } else if ASCII.isTokenChar(byte) {
                phase = .extensionToken
            } else if !Self.isBlank(byte) {
                return .malformed("a chunk extension value must be a token or a quoted string")
            }
        case .extensionQuoted:
            if byte == ASCII.quote {
                phase = .extensionAfterQuoted
            } else if byte == ASCII.backslash {
                phase = .extensionQuotedPair
            } else if !Self.isFieldValueByte(byte) {
                return .malformed("bad character in a quoted chunk extension")
            }
        case .extensionQuotedPair:
            guard Self.isFieldValueByte(byte) else { return .malformed("bad character in a quoted chunk extension") }
            phase = .extensionQuoted
        case .extensionAfterQuoted:
            if byte == ASCII.cr {
                phase = .sizeLF
            } else if byte == semicolon {
                phase = .extensionSpaceBeforeName
            } else if Self.isBlank(byte) {
                phase = .extensionSpaceAfterValue
            } else {
                return .malformed("bad character after a quoted chunk extension")
            }
        default:
            preconditionFailure("not a chunk extension phase")
        }
        return nil
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: return Int(byte - 48)
        case 65...70: return Int(byte - 55)
        case 97...102: return Int(byte - 87)
        default: return nil
        }
    }

    @inline(__always)
    private static func isBlank(_ byte: UInt8) -> Bool { byte == ASCII.space || byte == ASCII.tab }

    /// HTAB, SP, VCHAR or obs-text: what a field value (and a quoted string) may hold.
    @inline(__always)
    static func isFieldValueByte(_ byte: UInt8) -> Bool { byte == ASCII.tab || (byte >= 0x20 && byte != 0x7F) }
}
