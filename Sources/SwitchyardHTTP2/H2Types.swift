/// A header field of an HTTP/2 message, as decoded by HPACK (lowercase name).
public struct H2Field: Sendable, Equatable {
    public let name: [UInt8]
    public let value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: Array(name.utf8), value: Array(value.utf8))
    }
}

/// Where a field's name and value are in a head's bytes.
struct H2FieldSpan {
    var name: Range<Int>
    var value: Range<Int>
}

/// The regular fields of a header block as nghttp2 decoded them (lowercase names, in order),
/// valid only during the call that gets them: their bytes are in the session's reused buffer.
public struct H2FieldsView {
    private let bytes: UnsafeRawBufferPointer
    private let spans: [H2FieldSpan]

    init(bytes: UnsafeRawBufferPointer, spans: [H2FieldSpan]) {
        self.bytes = bytes
        self.spans = spans
    }

    public var count: Int { spans.count }
    public func name(at index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[spans[index].name]) }
    public func value(at index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[spans[index].value]) }

    /// The value of the first field with this lowercase name.
    public func field(_ name: StaticString) -> UnsafeRawBufferPointer? {
        let wanted = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        for span in spans where span.name.count == wanted.count && bytes[span.name].elementsEqual(wanted) {
            return UnsafeRawBufferPointer(rebasing: bytes[span.value])
        }
        return nil
    }

    /// Copies that outlive the call.
    public var copied: [H2Field] {
        (0..<count).map { H2Field(name: Array(name(at: $0)), value: Array(value(at: $0))) }
    }
}

/// A request head as nghttp2 decoded it, valid only during the delegate call that gets it
/// (see `H2FieldsView`). The pseudo-header fields were checked by nghttp2 (present once, in
/// front, the right ones for the method).
public struct H2RequestView {
    public let method: UnsafeRawBufferPointer
    public let scheme: UnsafeRawBufferPointer
    public let authority: UnsafeRawBufferPointer
    public let path: UnsafeRawBufferPointer
    public let fields: H2FieldsView
    /// Decoded size in the RFC 9113 §6.5.2 sense (name + value + 32 per field).
    public let listBytes: Int

    init(bytes: UnsafeRawBufferPointer, fields: H2FieldsView, pseudo: [Range<Int>], listBytes: Int) {
        func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[range]) }
        method = slice(pseudo[0])
        scheme = slice(pseudo[1])
        authority = slice(pseudo[2])
        path = slice(pseudo[3])
        self.fields = fields
        self.listBytes = listBytes
    }

    public var fieldCount: Int { fields.count }
    public func name(at index: Int) -> UnsafeRawBufferPointer { fields.name(at: index) }
    public func value(at index: Int) -> UnsafeRawBufferPointer { fields.value(at: index) }
    public func field(_ name: StaticString) -> UnsafeRawBufferPointer? { fields.field(name) }

    /// A copy that outlives the call.
    public var copied: H2RequestHead {
        var head = H2RequestHead()
        head.method = Array(method)
        head.scheme = Array(scheme)
        head.authority = Array(authority)
        head.path = Array(path)
        head.fields = fields.copied
        head.listBytes = listBytes
        return head
    }
}

/// A request head that owns its bytes (`H2RequestView.copied`).
public struct H2RequestHead: Sendable, Equatable {
    public var method: [UInt8] = []
    public var scheme: [UInt8] = []
    public var authority: [UInt8] = []
    public var path: [UInt8] = []
    public var fields: [H2Field] = []
    /// Decoded size in the RFC 9113 §6.5.2 sense (name + value + 32 per field).
    public var listBytes = 0

    public init() {}

    public func field(_ name: String) -> [UInt8]? {
        let wanted = Array(name.utf8)
        return fields.first { $0.name == wanted }?.value
    }
}

/// The limits an HTTP/2 connection enforces, each against a known attack. Defaults are
/// nghttp2's where they are safe, tighter where they are not.
public struct H2Limits: Sendable, Equatable {
    /// Streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: UInt32 = 100
    /// Decoded request head (SETTINGS_MAX_HEADER_LIST_SIZE); beyond it the stream is reset.
    public var maxHeaderListBytes = 65536
    /// Each stream's receive window: request body bytes the client may send ahead of what the
    /// proxy has passed on (`consume` opens it again).
    public var streamWindowBytes: UInt32 = 65535
    /// Rapid reset (CVE-2023-44487): RST_STREAM frames allowed in a burst, and regained per
    /// second; beyond them the connection gets GOAWAY ENHANCE_YOUR_CALM.
    public var resetBurst: UInt64 = 200
    public var resetsPerSecond: UInt64 = 33
    /// CONTINUATION flood (CVE-2024-28182): CONTINUATION frames after one HEADERS frame.
    public var maxContinuations = 8
    /// SETTINGS and PING floods: acknowledgements queued unsent before the peer counts as
    /// misbehaving.
    public var maxQueuedAcks = 1000
    /// Frames that carry no request and ask for no response (PRIORITY, WINDOW_UPDATE,
    /// SETTINGS, PING, DATA without payload or END_STREAM): allowed in a burst, and regained per
    /// second; beyond them the connection gets GOAWAY ENHANCE_YOUR_CALM. Each costs work and
    /// none is needed often: real clients send a few per request.
    public var overheadFrameBurst: UInt64 = 20_000
    public var overheadFramesPerSecond: UInt64 = 10_000
    /// HPACK: the decoder table the client may use (SETTINGS_HEADER_TABLE_SIZE).
    public var headerTableBytes: UInt32 = 4096

    public init() {}
}

/// Why the proxy ended an HTTP/2 connection with GOAWAY: the `reason` label of
/// `switchyard_http2_goaway_total`.
public enum H2GoAwayReason: Int, CaseIterable, Sendable {
    /// The proxy drains (SIGTERM): streams taken finish, no new ones start.
    case drain
    /// No stream in progress for `timeouts.idle_ms`.
    case idleTimeout
    /// The client broke the protocol (bad frames, HPACK, stream states).
    case protocolError
    /// Over the RST_STREAM budget (rapid reset).
    case rapidReset
    /// Over the budget of frames that carry no request.
    case overheadFrames
    /// SETTINGS or PING acknowledgements the client does not read.
    case ackFlood
    /// Too many CONTINUATION frames after one HEADERS.
    case continuationFlood

    public var label: String {
        switch self {
        case .drain: "drain"
        case .idleTimeout: "idle_timeout"
        case .protocolError: "protocol_error"
        case .rapidReset: "rapid_reset"
        case .overheadFrames: "overhead_frames"
        case .ackFlood: "ack_flood"
        case .continuationFlood: "continuation_flood"
        }
    }
}

/// A fatal error of an HTTP/2 connection: the session has queued GOAWAY (when it could) and
/// the connection closes once the output is sent.
public struct H2Error: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let description: String

    public init(code: Int32, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// What the connection that owns an `H2ServerSession` hears about its streams. Calls come
/// during `receive` and `send` (from nghttp2's callbacks), on the connection's own thread.
public protocol H2ServerSessionDelegate: AnyObject {
    /// A request head is complete (valid during the call only); `endStream`: it has no body.
    func h2Request(stream: Int32, head: H2RequestView, endStream: Bool)
    /// Request body bytes, valid only during the call. The stream's window opens again as
    /// the connection calls `consume` for them.
    func h2RequestData(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// The request body is complete, with its trailer fields (empty when none).
    func h2RequestEnd(stream: Int32, trailers: [H2Field])
    /// The stream is gone: answered and finished (`errorCode` 0), or reset by either side.
    func h2StreamClosed(stream: Int32, errorCode: UInt32)
    /// Response body bytes for `stream`: copies up to `buffer.count` bytes and says how many,
    /// and whether the body ends there. Nil when none are ready (`resume` when they are).
    func h2ResponseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)?
    /// The response body of `stream` ended: its trailer fields (gRPC's `grpc-status`), given
    /// with the session's `trailerField`; false when it has none.
    func h2ResponseTrailers(stream: Int32) -> Bool
}
