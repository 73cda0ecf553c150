import CNGHTTP2
import Glibc

/// The server side of one HTTP/2 connection, over nghttp2: bytes from the client go in
/// (`receive`), bytes for the client come out (`send`), and what the client asked for reaches
/// the delegate. No sockets (the connection that owns it does the I/O); the clock is read only
/// to refill the reset budget.
///
/// nghttp2 checks the protocol (frame sizes, stream states, HPACK, pseudo-header fields,
/// uppercase and connection-specific fields, content-length against DATA) and answers PING and
/// SETTINGS. This class sets the limits of `H2Limits`, opens stream windows only as the
/// connection consumes request bytes (so a slow backend holds back a fast client instead of
/// filling the proxy), and collects request heads for the delegate.
///
/// One thread only: the connection's worker.
public final class H2ServerSession {
    private var session: OpaquePointer?
    /// Safe unowned: the delegate owns the session (the connection, or a test), so it outlives
    /// every callback; no reference counting per callback.
    public unowned(unsafe) var delegate: H2ServerSessionDelegate?
    public let limits: H2Limits
    /// The request head or trailers being decoded.
    private var decoder = H2HeadDecoder(pseudoNames: [":method", ":scheme", ":authority", ":path"])
    /// Where response heads are built (`beginResponse` … `submitResponse`).
    private let builder: H2HeadBuilder
    /// Trailer fields to send after a stream's response body (gRPC status).
    private var responseTrailers: [Int32: [H2Field]] = [:]
    /// Rapid reset: a token bucket of RST_STREAM frames (`limits.resetBurst`, refilled at
    /// `limits.resetsPerSecond`); empty means GOAWAY ENHANCE_YOUR_CALM.
    private var resetTokens: Double
    private var resetsCountedAt = monotonicSeconds()

    /// nghttp2's memory, when not malloc's; kept here so that it outlives the session.
    private let allocator: H2Allocator?

    /// `builder`: shared by the sessions of one thread (a head is built and submitted in one go).
    /// `allocator`: nghttp2's memory from that thread's free lists (nil: malloc).
    public init(limits: H2Limits = H2Limits(), builder: H2HeadBuilder = H2HeadBuilder(), allocator: H2Allocator? = nil) throws(H2Error) {
        self.limits = limits
        self.builder = builder
        self.allocator = allocator
        self.resetTokens = Double(limits.resetBurst)
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw H2Error(code: NGHTTP2_ERR_NOMEM.rawValue, "out of memory") }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw H2Error(code: NGHTTP2_ERR_NOMEM.rawValue, "out of memory") }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_no_closed_streams(option, 1)
        // nghttp2's own reset limit (GOAWAY INTERNAL_ERROR) stays as a backstop behind ours.
        nghttp2_option_set_stream_reset_rate_limit(option, limits.resetBurst * 2, limits.resetsPerSecond * 2)
        nghttp2_option_set_max_continuations(option, limits.maxContinuations)
        nghttp2_option_set_max_outbound_ack(option, limits.maxQueuedAcks)
        // Response heads are encoded without a dynamic table (static table and literals, as
        // HAProxy does): less memory per connection and less work per head.
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 0)
        var created: OpaquePointer?
        let owner = Unmanaged.passUnretained(self).toOpaque()
        var memory = allocator?.memory ?? nghttp2_mem()
        // nghttp2 copies the allocator's functions into the session.
        let result = allocator == nil
            ? nghttp2_session_server_new2(&created, callbacks, owner, option)
            : nghttp2_session_server_new3(&created, callbacks, owner, option, &memory)
        guard result == 0, let created else { throw H2Error(code: result, "cannot create an HTTP/2 session") }
        session = created
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: limits.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: limits.streamWindowBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(limits.maxHeaderListBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE.rawValue), value: limits.headerTableBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        let submitted = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard submitted == 0 else { throw H2Error(code: submitted, "cannot queue the SETTINGS frame") }
    }

    deinit { nghttp2_session_del(session) }

    /// Takes bytes from the client (the connection preface first). A protocol error is fatal:
    /// GOAWAY is queued, `send` still has bytes to write, then the connection closes.
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(H2Error) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        let result = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        guard result < 0 else { return }
        // Some fatal errors (floods, too many CONTINUATIONs) queue no GOAWAY: the client still
        // learns why (a no-op when one is queued).
        let code = result == NGHTTP2_ERR_FLOODED.rawValue || result == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue
            ? NGHTTP2_ENHANCE_YOUR_CALM.rawValue : NGHTTP2_PROTOCOL_ERROR.rawValue
        _ = nghttp2_session_terminate_session(session, code)
        throw H2Error(code: Int32(result), String(cString: nghttp2_strerror(Int32(result))))
    }

    /// The next bytes for the client (valid until the next call), or nil when there are none.
    /// Call until nil after `receive` and after anything submitted.
    public func send() throws(H2Error) -> UnsafeRawBufferPointer? {
        var pointer: UnsafePointer<UInt8>?
        let count = nghttp2_session_mem_send(session, &pointer)
        if count < 0 { throw H2Error(code: Int32(count), String(cString: nghttp2_strerror(Int32(count)))) }
        guard count > 0, let pointer else { return nil }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }

    /// Whether the connection still has a reason to read, or to write.
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    /// Queues a response head; the body (unless `hasBody` is false) is pulled from the
    /// delegate's `h2ResponseData`. Fields must be lowercase, without connection-specific ones.
    public func respond(stream: Int32, status: Int, fields: [H2Field], hasBody: Bool) throws(H2Error) {
        beginResponse(status: status)
        for field in fields {
            field.name.withUnsafeBytes { name in field.value.withUnsafeBytes { value in responseField(name: name, value: value) } }
        }
        try submitResponse(stream: stream, hasBody: hasBody)
    }

    /// Starts a response head, built in reused storage: `responseField` for each field, then
    /// `submitResponse`. Nothing is allocated once the storage has grown to a thread's heads.
    public func beginResponse(status: Int) {
        builder.begin(status: status)
    }

    /// A field of the response head being built; `lowercase` folds the name's ASCII letters.
    public func responseField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, lowercase: Bool = false) {
        builder.add(name: name, value: value, lowercase: lowercase)
    }

    /// Queues the response head built since `beginResponse` (nghttp2 copies it).
    public func submitResponse(stream: Int32, hasBody: Bool) throws(H2Error) {
        let result = builder.withList { list, count in
            if hasBody {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readResponseData)
                return nghttp2_submit_response(session, stream, list, count, &provider)
            }
            return nghttp2_submit_response(session, stream, list, count, nil)
        }
        guard result == 0 else { throw H2Error(code: result, String(cString: nghttp2_strerror(result))) }
    }

    /// Trailer fields sent after `stream`'s response body ends (gRPC's `grpc-status`).
    public func setTrailers(stream: Int32, fields: [H2Field]) {
        responseTrailers[stream] = fields
    }

    /// More response bytes are ready for a stream whose data source said none were.
    public func resume(stream: Int32) {
        _ = nghttp2_session_resume_data(session, stream)
    }

    /// `count` request body bytes of `stream` have been passed on: its window (and the
    /// connection's) opens by as much.
    public func consume(stream: Int32, bytes count: Int) {
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Request body bytes of a stream that is gone: only the connection's window opens.
    public func consumeConnection(bytes count: Int) {
        _ = nghttp2_session_consume_connection(session, count)
    }

    /// Resets a stream (the backend failed mid-response, or the proxy gives up on it).
    public func reset(stream: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// Graceful shutdown: GOAWAY naming the last stream taken; streams up to it finish.
    public func goAway(errorCode: UInt32 = 0) {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, errorCode, nil, 0)
    }

    // MARK: - From nghttp2's callbacks

    fileprivate func beginHeaders(stream: Int32) {
        decoder.begin(stream: stream)
    }

    /// One decoded field of the head being read. False resets the stream (too large).
    fileprivate func header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        decoder.add(stream: stream, name: name, value: value, limit: limits.maxHeaderListBytes)
    }

    fileprivate func headersComplete(stream: Int32, category: nghttp2_headers_category, endStream: Bool) {
        guard decoder.end(stream: stream) else { return }
        decoder.withFields { bytes, fields in
            if category == NGHTTP2_HCAT_REQUEST {
                let head = H2RequestView(bytes: bytes, fields: fields, pseudo: decoder.pseudo, listBytes: decoder.listBytes)
                delegate?.h2Request(stream: stream, head: head, endStream: endStream)
            } else if endStream {
                delegate?.h2RequestEnd(stream: stream, trailers: fields.copied)
            }
        }
    }

    /// The client reset a stream: false once it has used up its budget.
    fileprivate func resetReceived() -> Bool {
        let now = monotonicSeconds()
        resetTokens = min(Double(limits.resetBurst), resetTokens + (now - resetsCountedAt) * Double(limits.resetsPerSecond))
        resetsCountedAt = now
        resetTokens -= 1
        return resetTokens >= 0
    }

    fileprivate func dataEnded(stream: Int32) {
        delegate?.h2RequestEnd(stream: stream, trailers: [])
    }

    fileprivate func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        delegate?.h2RequestData(stream: stream, bytes: bytes)
    }

    fileprivate func closed(stream: Int32, errorCode: UInt32) {
        responseTrailers[stream] = nil
        delegate?.h2StreamClosed(stream: stream, errorCode: errorCode)
    }

    fileprivate func responseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (count, end) = delegate?.h2ResponseData(stream: stream, into: buffer) else {
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        if end {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if let trailers = responseTrailers.removeValue(forKey: stream) {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let result = withFieldList(trailers) { list, fieldCount in nghttp2_submit_trailer(session, stream, list, fieldCount) }
                if result != 0 { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
            }
        }
        return count
    }

    /// Calls `body` with `fields` as nghttp2 name/value pairs (copied by nghttp2 before it
    /// returns): one contiguous copy of all the bytes.
    private func withFieldList(_ fields: [H2Field], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32) -> Int32 {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.name.count + $1.value.count })
        for field in fields { bytes += field.name + field.value }
        return bytes.withUnsafeMutableBufferPointer { storage in
            var offset = 0
            var list: [nghttp2_nv] = []
            list.reserveCapacity(fields.count)
            for field in fields {
                let name = storage.baseAddress! + offset
                let value = name + field.name.count
                offset += field.name.count + field.value.count
                list.append(nghttp2_nv(name: name, value: value, namelen: field.name.count, valuelen: field.value.count,
                                       flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
            }
            return list.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}

// MARK: - nghttp2 callbacks (C functions: the session comes back through `user_data`)

private func owner(_ data: UnsafeMutableRawPointer?) -> H2ServerSession {
    Unmanaged<H2ServerSession>.fromOpaque(data!).takeUnretainedValue()
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    owner(data).beginHeaders(stream: frame.pointee.hd.stream_id)
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    let accepted = owner(data).header(
        stream: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: nameLength),
        value: UnsafeRawBufferPointer(start: value, count: valueLength))
    // Resets this stream only; the HPACK state stays in step.
    return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
}

private let onFrameReceived: nghttp2_on_frame_recv_callback = { session, frame, data in
    guard let frame else { return 0 }
    let header = frame.pointee.hd
    let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(header.type) {
    case NGHTTP2_HEADERS.rawValue:
        owner(data).headersComplete(stream: header.stream_id, category: frame.pointee.headers.cat, endStream: endStream)
    case NGHTTP2_DATA.rawValue where endStream:
        owner(data).dataEnded(stream: header.stream_id)
    case NGHTTP2_RST_STREAM.rawValue:
        if !owner(data).resetReceived() { _ = nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue) }
    default:
        break
    }
    return 0
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, bytes, count, data in
    owner(data).data(stream: stream, bytes: UnsafeRawBufferPointer(start: bytes, count: count))
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, stream, errorCode, data in
    owner(data).closed(stream: stream, errorCode: errorCode)
    return 0
}

private let readResponseData: nghttp2_data_source_read_callback = { _, stream, buffer, length, flags, _, data in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return owner(data).responseData(stream: stream, into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags)
}

private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
