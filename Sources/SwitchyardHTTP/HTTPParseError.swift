/// Why a message head was refused. Each case maps to the status the proxy answers with and a
/// short payload-free code usable as a metric label.
public enum HTTPParseError: Error, Equatable, Sendable {
    case headTooLarge
    case tooManyHeaders
    case uriTooLong
    case versionNotSupported
    case malformed(StaticString)

    public var status: Int {
        switch self {
        case .headTooLarge, .tooManyHeaders: return 431
        case .uriTooLong: return 414
        case .versionNotSupported: return 505
        case .malformed: return 400
        }
    }

    public var code: StaticString {
        switch self {
        case .headTooLarge: return "header_too_large"
        case .tooManyHeaders: return "too_many_headers"
        case .uriTooLong: return "uri_too_long"
        case .versionNotSupported: return "http_version_not_supported"
        case .malformed: return "bad_request"
        }
    }

    public var message: StaticString {
        switch self {
        case .headTooLarge: return "the request head is larger than limits.max_head_bytes"
        case .tooManyHeaders: return "the request has more header fields than limits.max_headers"
        case .uriTooLong: return "the request target is longer than limits.max_uri_bytes"
        case .versionNotSupported: return "only HTTP/1.0 and HTTP/1.1 are served on this listener"
        case .malformed(let reason): return reason
        }
    }

    public static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        switch (lhs, rhs) {
        case (.headTooLarge, .headTooLarge), (.tooManyHeaders, .tooManyHeaders), (.uriTooLong, .uriTooLong),
             (.versionNotSupported, .versionNotSupported):
            return true
        case (.malformed(let a), .malformed(let b)):
            return a.description == b.description
        default:
            return false
        }
    }
}

/// Size limits applied while parsing a head.
public struct HeadLimits: Sendable {
    /// Largest request or response head, in bytes, including the final empty line.
    public var maxHeadBytes: Int
    /// Most header fields in one head.
    public var maxHeaders: Int
    /// Longest request target, in bytes.
    public var maxURIBytes: Int

    public init(maxHeadBytes: Int = 65536, maxHeaders: Int = 100, maxURIBytes: Int = 8192) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaders = maxHeaders
        self.maxURIBytes = maxURIBytes
    }
}

/// The outcome of offering bytes to a head parser.
public enum HeadParseStatus: Equatable, Sendable {
    /// The head is not complete yet.
    case needMore
    /// The head is complete and `length` bytes long. `skipped` leading empty lines come first.
    case complete(length: Int)
    case error(HTTPParseError)
}
