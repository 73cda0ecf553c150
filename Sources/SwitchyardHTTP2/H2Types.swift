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

/// A request head: the pseudo-header fields (checked by nghttp2: present once, in front, the
/// right ones for the method) and the regular fields in order.
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
    /// HPACK: the decoder table the client may use (SETTINGS_HEADER_TABLE_SIZE).
    public var headerTableBytes: UInt32 = 4096

    public init() {}
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
    /// A request head is complete; `endStream`: it has no body.
    func h2Request(stream: Int32, head: H2RequestHead, endStream: Bool)
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
}
