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
public final class H2ClientSession {
    private var session: OpaquePointer?
    /// Safe unowned: the delegate owns the session, so it outlives every callback.
    public unowned(unsafe) var delegate: H2ClientSessionDelegate?
    private var decoder = H2HeadDecoder(pseudoNames: [":status"])
    private let builder: H2HeadBuilder
    /// nghttp2's memory, when not malloc's; kept here so that it outlives the session.
    private let allocator: H2Allocator?
    /// Largest response head accepted; a larger one resets its stream.
    private let maxHeaderListBytes: Int
    /// Streams submitted and not yet closed.
    public private(set) var openStreams = 0

    /// `windowBytes`: each stream's receive window (response bytes the backend may send
    /// ahead of what the connection consumed).
    public init(builder: H2HeadBuilder = H2HeadBuilder(), allocator: H2Allocator? = nil, windowBytes: UInt32 = 65535,
                maxHeaderListBytes: Int = 65536) throws(H2Error) {
        self.builder = builder
        self.allocator = allocator
        self.maxHeaderListBytes = maxHeaderListBytes
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw H2Error(code: NGHTTP2_ERR_NOMEM.rawValue, "out of memory") }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onClientBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onClientHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onClientFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onClientDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onClientStreamClose)
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw H2Error(code: NGHTTP2_ERR_NOMEM.rawValue, "out of memory") }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 0)
        var created: OpaquePointer?
        let owner = Unmanaged.passUnretained(self).toOpaque()
        var memory = allocator?.memory ?? nghttp2_mem()
        let result = allocator == nil
            ? nghttp2_session_client_new2(&created, callbacks, owner, option)
            : nghttp2_session_client_new3(&created, callbacks, owner, option, &memory)
        guard result == 0, let created else { throw H2Error(code: result, "cannot create an HTTP/2 session") }
        session = created
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: windowBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        let submitted = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard submitted == 0 else { throw H2Error(code: submitted, "cannot queue the SETTINGS frame") }
    }

    deinit { nghttp2_session_del(session) }

    /// Takes bytes from the backend. A protocol error is fatal (GOAWAY is queued).
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(H2Error) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        let result = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if result < 0 { throw H2Error(code: Int32(result), String(cString: nghttp2_strerror(Int32(result)))) }
    }

    /// The next bytes for the backend (the connection preface first; valid until the next
    /// call), or nil when there are none.
    public func send() throws(H2Error) -> UnsafeRawBufferPointer? {
        var pointer: UnsafePointer<UInt8>?
        let count = nghttp2_session_mem_send(session, &pointer)
        if count < 0 { throw H2Error(code: Int32(count), String(cString: nghttp2_strerror(Int32(count)))) }
        guard count > 0, let pointer else { return nil }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }

    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    /// Streams the backend lets this connection open at once (its SETTINGS_MAX_CONCURRENT_STREAMS;
    /// unlimited until its SETTINGS arrive, as RFC 9113 §6.5.2 has it).
    public var maxConcurrentStreams: UInt32 {
        nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
    }

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
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readRequestData)
                return nghttp2_submit_request(session, nil, list, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, list, count, nil, nil)
        }
        guard stream > 0 else { throw H2Error(code: stream, String(cString: nghttp2_strerror(stream))) }
        openStreams += 1
        return stream
    }

    /// More request bytes are ready for a stream whose data source said none were.
    public func resume(stream: Int32) {
        _ = nghttp2_session_resume_data(session, stream)
    }

    /// `count` response bytes of `stream` have been passed on: its window opens by as many.
    public func consume(stream: Int32, bytes count: Int) {
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Response bytes of a stream that is gone: only the connection's window opens.
    public func consumeConnection(bytes count: Int) {
        _ = nghttp2_session_consume_connection(session, count)
    }

    /// Cancels a stream (the client went away: the backend learns it, e.g. gRPC cancellation).
    public func reset(stream: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    // MARK: - From nghttp2's callbacks

    fileprivate func beginHeaders(stream: Int32) {
        decoder.begin(stream: stream)
    }

    fileprivate func header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        decoder.add(stream: stream, name: name, value: value, limit: maxHeaderListBytes)
    }

    fileprivate func headersComplete(stream: Int32, category: nghttp2_headers_category, endStream: Bool) {
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

    fileprivate func dataEnded(stream: Int32) {
        delegate?.h2ResponseEnd(stream: stream, trailers: nil)
    }

    fileprivate func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        delegate?.h2ResponseData(stream: stream, bytes: bytes)
    }

    fileprivate func closed(stream: Int32, errorCode: UInt32) {
        openStreams -= 1
        delegate?.h2StreamClosed(stream: stream, errorCode: errorCode)
    }

    fileprivate func requestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (count, end) = delegate?.h2RequestData(stream: stream, into: buffer) else {
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        if end { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return count
    }
}

// MARK: - nghttp2 callbacks (C functions: the session comes back through `user_data`)

private func client(_ data: UnsafeMutableRawPointer?) -> H2ClientSession {
    // Safe because nghttp2 passes back the user data the session was created with.
    Unmanaged<H2ClientSession>.fromOpaque(data.unsafelyUnwrapped).takeUnretainedValue()
}

private let onClientBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    client(data).beginHeaders(stream: frame.pointee.hd.stream_id)
    return 0
}

private let onClientHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    let accepted = client(data).header(
        stream: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: nameLength),
        value: UnsafeRawBufferPointer(start: value, count: valueLength))
    return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
}

private let onClientFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, data in
    guard let frame else { return 0 }
    let header = frame.pointee.hd
    let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(header.type) {
    case NGHTTP2_HEADERS.rawValue:
        client(data).headersComplete(stream: header.stream_id, category: frame.pointee.headers.cat, endStream: endStream)
    case NGHTTP2_DATA.rawValue where endStream:
        client(data).dataEnded(stream: header.stream_id)
    default:
        break
    }
    return 0
}

private let onClientDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, bytes, count, data in
    client(data).data(stream: stream, bytes: UnsafeRawBufferPointer(start: bytes, count: count))
    return 0
}

private let onClientStreamClose: nghttp2_on_stream_close_callback = { _, stream, errorCode, data in
    client(data).closed(stream: stream, errorCode: errorCode)
    return 0
}

private let readRequestData: nghttp2_data_source_read_callback = { _, stream, buffer, length, flags, _, data in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return client(data).requestData(stream: stream, into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags)
}
