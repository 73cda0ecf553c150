import CNGHTTP2

/// What the connection that owns an `H2ClientSession` hears about its streams. Calls come
/// during `receive` and `send` (from nghttp2's callbacks), on the connection's own thread.
public protocol H2ClientSessionDelegate: AnyObject {
    /// A final response head (valid during the call); `endStream`: nothing follows it (a gRPC
    /// Trailers-Only response, or no body). Interim (1xx) heads are not reported.
    func h2Response(stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool)
    /// Response body bytes, valid only during the call. The stream's window opens again as
    /// the connection calls `consume` for them.
    func h2ResponseData(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// The response is complete, with its trailer fields (nil when it ended with DATA).
    func h2ResponseEnd(stream: Int32, trailers: H2FieldsView?)
    /// The stream is gone: complete (`errorCode` 0), or reset by either side.
    func h2StreamClosed(stream: Int32, errorCode: UInt32)
    /// Request body bytes for `stream`: copies up to `buffer.count` bytes and says how many,
    /// and whether the body ends there. Nil when none are ready (`resume` when they are).
    func h2RequestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)?
}

/// The client side of one HTTP/2 connection to a backend (a gRPC server), over nghttp2: the
/// mirror of `H2ServerSession`. Requests go out built in the shared `H2HeadBuilder`, their
/// bodies pulled from the delegate; response heads come back in place (`H2FieldsView`), their
/// bodies as bytes whose window opens only as the connection consumes them. No sockets.
///
/// One thread only: the connection's worker.
public final class H2ClientSession: H2Session {
    /// Safe unowned: the delegate owns the session, so it outlives every callback.
    public unowned(unsafe) var delegate: H2ClientSessionDelegate?
    /// Streams submitted and not yet closed.
    public private(set) var openStreams = 0
    private static let pseudoNames: [StaticString] = [":status"]

    /// `windowBytes`: each stream's receive window (response bytes the backend may send
    /// ahead of what the connection consumed); `connectionWindowBytes`: the same for all
    /// streams together.
    public init(builder: H2HeadBuilder = H2HeadBuilder(), allocator: H2Allocator? = nil, windowBytes: UInt32 = 65535,
                connectionWindowBytes: Int32 = 65535, maxHeaderListBytes: Int = 65536) throws(H2Error) {
        let settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: windowBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        try super.init(
            server: false, pseudoNames: Self.pseudoNames, builder: builder, allocator: allocator, maxHeaderListBytes: maxHeaderListBytes,
            settings: settings) { _ in }
        if connectionWindowBytes > 65535 {
            _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, connectionWindowBytes)
        }
    }

    /// Streams the backend lets this connection open at once (its SETTINGS_MAX_CONCURRENT_STREAMS;
    /// unlimited until its SETTINGS arrive, as RFC 9113 §6.5.2 has it).
    public var maxConcurrentStreams: UInt32 {
        nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
    }

    /// Whether a new request may start (false once the backend sent GOAWAY).
    public var acceptsRequests: Bool { nghttp2_session_check_request_allowed(session) != 0 }

    /// Starts a request head: `requestField` for each regular field, then `submitRequest`.
    public func beginRequest(method: UnsafeRawBufferPointer, scheme: UnsafeRawBufferPointer,
                             authority: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer) {
        builder.begin(method: method, scheme: scheme, authority: authority, path: path)
    }

    /// A regular field of the request being built (lowercase name, no connection-specific field).
    public func requestField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        builder.add(name: name, value: value, lowercase: false)
    }

    /// Queues the request built since `beginRequest`; its body (unless `hasBody` is false) is
    /// pulled from the delegate's `h2RequestData`. Returns the stream id.
    public func submitRequest(hasBody: Bool) throws(H2Error) -> Int32 {
        let stream = builder.withList { list, count in
            if hasBody {
                var provider = Self.bodyProvider
                return nghttp2_submit_request(session, nil, list, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, list, count, nil, nil)
        }
        guard stream > 0 else { throw H2Error(code: stream, String(cString: nghttp2_strerror(stream))) }
        openStreams += 1
        return stream
    }

    // MARK: - From nghttp2's callbacks

    override func headersComplete(stream: Int32, category: nghttp2_headers_category, endStream: Bool) {
        guard decoder.end(stream: stream) else { return }
        decoder.withFields { bytes, fields in
            if category == NGHTTP2_HCAT_RESPONSE {
                var status = 0
                for digit in bytes[decoder.pseudo[0]] { status = status * 10 + Int(digit &- UInt8(ascii: "0")) }
                guard status >= 200 else { return }  // interim
                delegate?.h2Response(stream: stream, status: status, fields: fields, endStream: endStream)
            } else if category == NGHTTP2_HCAT_HEADERS && endStream {
                delegate?.h2ResponseEnd(stream: stream, trailers: fields)
            }
        }
    }

    override func dataEnded(stream: Int32) {
        delegate?.h2ResponseEnd(stream: stream, trailers: nil)
    }

    override func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        delegate?.h2ResponseData(stream: stream, bytes: bytes)
    }

    override func closed(stream: Int32, errorCode: UInt32) {
        openStreams -= 1
        delegate?.h2StreamClosed(stream: stream, errorCode: errorCode)
    }

    override func bodyData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (count, end) = delegate?.h2RequestData(stream: stream, into: buffer) else {
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        if end { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return count
    }
}
