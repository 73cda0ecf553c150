/// Follows a message body through the bytes relayed for it, to find where it ends.
///
/// The proxy forwards bodies in the framing they arrived in (chunked stays chunked), so it
/// does not decode: it only needs to know how many of the bytes at hand belong to the body
/// and whether the body is complete. Chunk framing is validated on the way (RFC 9112 §7.1):
///
///     chunked-body = *chunk last-chunk trailer-section CRLF
///     chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
///     last-chunk   = 1*("0") [ chunk-ext ] CRLF
public struct BodyFramer: Sendable {
    public enum Step: Equatable, Sendable {
        /// `count` bytes belong to the body; more are expected.
        case body(count: Int)
        /// `count` bytes belong to the body and it is complete.
        case end(count: Int)
        case error(HTTPParseError)
    }

    private enum State: Sendable {
        case remaining(Int)
        case chunkSize(value: Int, digits: Int)
        case chunkExtension(value: Int)
        case chunkSizeLF(value: Int)
        case chunkData(Int)
        case chunkDataCR
        case chunkDataLF
        case trailerLineStart(trailerBytes: Int)
        case trailerLine(trailerBytes: Int)
        case trailerLineLF(trailerBytes: Int)
        case finalLF
        case untilClose
        case done
    }

    private var state: State
    /// Limit on the trailer section, which is framing the proxy must scan, not relay blindly.
    static let maxTrailerBytes = 16384

    public init(_ framing: BodyFraming) {
        switch framing {
        case .none: state = .done
        case .contentLength(let length): state = length > 0 ? .remaining(length) : .done
        case .chunked: state = .chunkSize(value: 0, digits: 0)
        case .untilClose: state = .untilClose
        }
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Consumes bytes from the front of `bytes` that belong to the body.
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Step {
        var index = 0
        let count = bytes.count
        while index < count {
            switch state {
            case .done:
                return .end(count: index)
            case .untilClose:
                return .body(count: count)
            case .remaining(let remaining):
                let take = min(remaining, count - index)
                index += take
                if take == remaining {
                    state = .done
                    return .end(count: index)
                }
                state = .remaining(remaining - take)
            case .chunkData(let remaining):
                let take = min(remaining, count - index)
                index += take
                state = take == remaining ? .chunkDataCR : .chunkData(remaining - take)
            case .chunkSize(let value, let digits):
                let byte = bytes[index]
                if let digit = Self.hexValue(byte) {
                    // 15 hex digits stay far below Int.max; more is an attack, not a body.
                    guard digits < 15 else { return .error(.malformed("chunk size too large")) }
                    state = .chunkSize(value: value << 4 | digit, digits: digits + 1)
                } else if digits == 0 {
                    return .error(.malformed("a chunk size must start with a hex digit"))
                } else if byte == ASCII.cr {
                    state = .chunkSizeLF(value: value)
                } else if byte == UInt8(ascii: ";") || byte == ASCII.space || byte == ASCII.tab {
                    state = .chunkExtension(value: value)
                } else {
                    return .error(.malformed("bad character in a chunk size"))
                }
                index += 1
            case .chunkExtension(let value):
                let byte = bytes[index]
                if byte == ASCII.cr {
                    state = .chunkSizeLF(value: value)
                } else if byte == ASCII.lf || (byte < 0x20 && byte != ASCII.tab) || byte == 0x7F {
                    return .error(.malformed("bad character in a chunk extension"))
                }
                index += 1
            case .chunkSizeLF(let value):
                guard bytes[index] == ASCII.lf else { return .error(.malformed("a chunk size line must end with CRLF")) }
                index += 1
                state = value == 0 ? .trailerLineStart(trailerBytes: 0) : .chunkData(value)
            case .chunkDataCR:
                guard bytes[index] == ASCII.cr else { return .error(.malformed("chunk data must be followed by CRLF")) }
                index += 1
                state = .chunkDataLF
            case .chunkDataLF:
                guard bytes[index] == ASCII.lf else { return .error(.malformed("chunk data must be followed by CRLF")) }
                index += 1
                state = .chunkSize(value: 0, digits: 0)
            case .trailerLineStart(let trailerBytes):
                if bytes[index] == ASCII.cr {
                    state = .finalLF
                } else {
                    state = .trailerLine(trailerBytes: trailerBytes + 1)
                }
                index += 1
            case .trailerLine(let trailerBytes):
                let byte = bytes[index]
                guard trailerBytes < Self.maxTrailerBytes else { return .error(.malformed("trailer section too large")) }
                if byte == ASCII.cr {
                    state = .trailerLineLF(trailerBytes: trailerBytes + 1)
                } else if byte == ASCII.lf || (byte < 0x20 && byte != ASCII.tab) {
                    return .error(.malformed("bad character in a trailer field"))
                } else {
                    state = .trailerLine(trailerBytes: trailerBytes + 1)
                }
                index += 1
            case .trailerLineLF(let trailerBytes):
                guard bytes[index] == ASCII.lf else { return .error(.malformed("trailer lines must end with CRLF")) }
                index += 1
                state = .trailerLineStart(trailerBytes: trailerBytes + 1)
            case .finalLF:
                guard bytes[index] == ASCII.lf else { return .error(.malformed("a chunked body must end with CRLF")) }
                index += 1
                state = .done
                return .end(count: index)
            }
        }
        if case .done = state { return .end(count: index) }
        return .body(count: index)
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
}
