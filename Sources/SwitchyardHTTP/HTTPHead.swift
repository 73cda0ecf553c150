/// A span of bytes inside a message head, as offsets from the head's first byte.
///
/// Heads are never copied into `String`s on the request path: fields are byte ranges into the
/// connection's read buffer, valid until that buffer is consumed.
public struct ByteRange: Equatable, Sendable {
    public var start: Int32
    public var end: Int32

    public init(start: Int, end: Int) {
        self.start = Int32(truncatingIfNeeded: start)
        self.end = Int32(truncatingIfNeeded: end)
    }

    public static let empty = ByteRange(start: 0, end: 0)
    public var count: Int { Int(end - start) }
    public var isEmpty: Bool { start == end }

    @inline(__always)
    public func bytes(in head: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: head[Int(start)..<Int(end)])
    }
}

/// One header line: name and value (value without surrounding whitespace).
public struct HeaderField: Equatable, Sendable {
    public var name: ByteRange
    public var value: ByteRange
    public var kind: KnownHeader
    /// The whole line including its CRLF, for forwarding it unchanged.
    public var line: ByteRange
}

/// How a message's body is delimited (RFC 9112 §6).
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
    /// Responses only: the body runs until the server closes the connection.
    case untilClose
}

public enum HTTPVersion: Equatable, Sendable {
    case http10
    case http11
}

/// The request methods the proxy treats specially.
public enum RequestMethod: Sendable {
    case get, head, post, put, delete, options, connect, other

    public static func classify(_ bytes: UnsafeRawBufferPointer) -> RequestMethod {
        switch bytes.count {
        case 3:
            if ASCII.equalsExact(bytes, "GET") { return .get }
            if ASCII.equalsExact(bytes, "PUT") { return .put }
        case 4:
            if ASCII.equalsExact(bytes, "HEAD") { return .head }
            if ASCII.equalsExact(bytes, "POST") { return .post }
        case 6: if ASCII.equalsExact(bytes, "DELETE") { return .delete }
        case 7:
            if ASCII.equalsExact(bytes, "OPTIONS") { return .options }
            if ASCII.equalsExact(bytes, "CONNECT") { return .connect }
        default: break
        }
        return .other
    }

    /// RFC 9110 §9.2.2: repeating the request has the same effect as sending it once.
    public var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options: return true
        case .post, .connect, .other: return false
        }
    }
}

/// What the parser learned about a request head, beyond its raw fields.
public struct RequestHead: Sendable {
    public var method = ByteRange.empty
    public var methodKind = RequestMethod.other
    public var target = ByteRange.empty
    /// The target to forward, in origin-form (RFC 9112 §3.2.1): the whole target, or the path
    /// and query of an absolute-form target.
    public var originTarget = ByteRange.empty
    /// An absolute-form target without a path (`http://host?q`): "/" goes before `originTarget`.
    public var originNeedsSlash = false
    /// The target was in absolute-form: `host` is its authority, which replaces the Host field
    /// (RFC 9112 §3.2.2).
    public var hostFromTarget = false
    public var version = HTTPVersion.http11
    public var fields: [HeaderField] = []
    public var framing = BodyFraming.none
    public var keepAlive = true
    public var expectContinue = false
    /// A WebSocket upgrade (`Connection: upgrade` and `Upgrade: websocket`, no body). Other
    /// upgrade tokens (h2c, TLS) are not honoured: their headers are dropped.
    public var upgrade = false
    /// `TE: trailers`: the client accepts trailer fields in a chunked response.
    public var acceptsTrailers = false
    public var host = ByteRange.empty
    public var authorization: ByteRange?
    /// The `X-ANYSCALE-VERSION` value, trimmed; repeated headers must agree.
    public var pinnedVersion: ByteRange?
    /// `Connection` header options naming further hop-by-hop headers (rare).
    public var hasConnectionOptions = false
    public var hasRequestID = false

    public init() {
        fields.reserveCapacity(16)
    }

    mutating func reset() {
        self.method = .empty
        self.methodKind = .other
        self.target = .empty
        self.originTarget = .empty
        self.originNeedsSlash = false
        self.hostFromTarget = false
        self.version = .http11
        self.fields.removeAll(keepingCapacity: true)
        self.framing = .none
        self.keepAlive = true
        self.expectContinue = false
        self.upgrade = false
        self.acceptsTrailers = false
        self.host = .empty
        self.authorization = nil
        self.pinnedVersion = nil
        self.hasConnectionOptions = false
        self.hasRequestID = false
    }
}

/// What the parser learned about a response head.
public struct ResponseHead: Sendable {
    public var status = 0
    public var version = HTTPVersion.http11
    public var fields: [HeaderField] = []
    public var framing = BodyFraming.none
    public var keepAlive = true
    public var hasConnectionOptions = false
    /// The status line including CRLF.
    public var statusLine = ByteRange.empty

    public init() {
        fields.reserveCapacity(16)
    }

    mutating func reset() {
        status = 0
        version = .http11
        fields.removeAll(keepingCapacity: true)
        framing = .none
        keepAlive = true
        hasConnectionOptions = false
        statusLine = .empty
    }
}
