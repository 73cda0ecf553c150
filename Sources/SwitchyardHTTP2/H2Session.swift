import CNGHTTP2

/// What both sides of an HTTP/2 connection over nghttp2 share: the session, bytes in and out,
/// flow control, resets, head decoding in reused storage, and the one set of nghttp2 callbacks,
/// which hand frames to the side's overrides (`headersComplete`, `data`, …). `H2ServerSession`
/// (clients) and `H2ClientSession` (backends) add what is theirs.
///
/// One thread only: the connection's worker.
public class H2Session {
    var session: OpaquePointer?
    /// The head or trailers being decoded.
    var decoder: H2HeadDecoder
    /// Where outgoing heads are built; shared by the sessions of one thread.
    let builder: H2HeadBuilder
    /// nghttp2's memory, when not malloc's; kept here so that it outlives the session.
    private let allocator: H2Allocator?
    /// Largest decoded head accepted; a larger one resets its stream.
    let maxHeaderListBytes: Int
    /// Why this side ended the connection with GOAWAY, once it did.
    public internal(set) var goAwayReason: H2GoAwayReason?
    /// What an idle session gives back (`restIfQuiet`): nghttp2's frame buffer, whose bytes are
    /// dead once `send` found nothing more to send, and blocks that are all zero when idle
    /// (the stream map with no stream in it). Empty without an allocator.
    private(set) var frameBuffer: H2Allocator.PageBlock?
    private(set) var zeroWhenIdle: [H2Allocator.PageBlock] = []
    /// `send` returned nil since the last frame went out: the frame buffer holds nothing.
    private var sentAll = false
    /// Something was received or sent since the last `restIfQuiet`.
    private var touched = true
    /// The pages are given back and nothing was received or sent since.
    private var resting = false

    /// `configure` sets the side's own options; `settings` go out first.
    init(server: Bool, pseudoNames: [StaticString], builder: H2HeadBuilder, allocator: H2Allocator?, maxHeaderListBytes: Int,
         settings: [nghttp2_settings_entry], configure: (OpaquePointer) -> Void) throws(H2Error) {
        decoder = H2HeadDecoder(pseudoNames: pseudoNames)
        self.builder = builder
        self.allocator = allocator
        self.maxHeaderListBytes = maxHeaderListBytes
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
        // Windows open only as the connection passes bytes on (`consume`).
        nghttp2_option_set_no_auto_window_update(option, 1)
        // Heads are encoded without a dynamic table (static table and literals, as HAProxy
        // does): less memory per connection and less work per head.
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 0)
        configure(option)
        var created: OpaquePointer?
        let owner = Unmanaged.passUnretained(self).toOpaque()
        // nghttp2 copies the allocator's functions into the session.
        var memory = allocator?.memory ?? nghttp2_mem()
        allocator?.startRecording()
        let result: Int32 = switch (server, allocator == nil) {
        case (true, true): nghttp2_session_server_new2(&created, callbacks, owner, option)
        case (true, false): nghttp2_session_server_new3(&created, callbacks, owner, option, &memory)
        case (false, true): nghttp2_session_client_new2(&created, callbacks, owner, option)
        case (false, false): nghttp2_session_client_new3(&created, callbacks, owner, option, &memory)
        }
        let pages = allocator?.stopRecording() ?? []
        guard result == 0, let created else { throw H2Error(code: result, "cannot create an HTTP/2 session") }
        session = created
        for block in pages {
            if block.requested >= Self.framePayloadBytes && frameBuffer == nil { frameBuffer = block } else { zeroWhenIdle.append(block) }
        }
        var settings = settings
        let submitted = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard submitted == 0 else { throw H2Error(code: submitted, "cannot queue the SETTINGS frame") }
    }

    deinit { nghttp2_session_del(session) }

    /// Takes bytes from the peer (a client's connection preface first). A protocol error is
    /// fatal: GOAWAY is queued, `send` still has bytes to write, then the connection closes.
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(H2Error) {
        guard let base = bytes.baseAddress, !bytes.isEmpty, admit(bytes) else { return }
        touched = true
        let result = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        guard result < 0 else { return }
        // Some fatal errors (floods, too many CONTINUATIONs) queue no GOAWAY: the peer still
        // learns why (a no-op when one is queued).
        let reason: H2GoAwayReason = switch Int32(result) {
        case NGHTTP2_ERR_FLOODED.rawValue: .ackFlood
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue: .continuationFlood
        default: .protocolError
        }
        terminate(reason, code: reason == .protocolError ? NGHTTP2_PROTOCOL_ERROR.rawValue : NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        throw H2Error(code: Int32(result), String(cString: nghttp2_strerror(Int32(result))))
    }

    /// The next bytes for the peer (valid until the next call), or nil when there are none.
    /// Call until nil after `receive` and after anything submitted.
    public func send() throws(H2Error) -> UnsafeRawBufferPointer? {
        var pointer: UnsafePointer<UInt8>?
        let count = nghttp2_session_mem_send(session, &pointer)
        if count < 0 { throw H2Error(code: Int32(count), String(cString: nghttp2_strerror(Int32(count)))) }
        guard count > 0, let pointer else {
            sentAll = true
            return nil
        }
        sentAll = false
        touched = true
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }

    /// Called on every tick: a session that received and sent nothing since the last call
    /// gives its idle pages back to the kernel (once, until it is used again), so that an idle
    /// connection holds what it needs and not the 16 KiB it last wrote frames into. A page
    /// comes back, zero-filled, when nghttp2 next writes to it.
    public func restIfQuiet() {
        if touched {
            touched = false
            resting = false
            return
        }
        guard !resting, sentAll else { return }
        resting = true
        guard let allocator else { return }
        if let frameBuffer { allocator.discard(frameBuffer) }
        for block in zeroWhenIdle where H2Allocator.isZero(block) { allocator.discard(block) }
    }

    /// A frame's largest payload before SETTINGS_MAX_FRAME_SIZE is raised (nghttp2 never raises
    /// its own): the frame buffer holds at least this.
    private static let framePayloadBytes = 16384

    /// Whether the connection still has a reason to read, or to write.
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    /// More body bytes are ready for a stream whose data source said none were.
    public func resume(stream: Int32) {
        _ = nghttp2_session_resume_data(session, stream)
    }

    /// `count` body bytes received on `stream` have been passed on: its window (and the
    /// connection's) opens by as much.
    public func consume(stream: Int32, bytes count: Int) {
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Body bytes of a stream that is gone: only the connection's window opens.
    public func consumeConnection(bytes count: Int) {
        _ = nghttp2_session_consume_connection(session, count)
    }

    /// Ends the connection: GOAWAY with `code` is queued, what follows from the peer is ignored,
    /// and the session wants neither to read nor to write once it went out.
    func terminate(_ reason: H2GoAwayReason, code: UInt32 = NGHTTP2_ENHANCE_YOUR_CALM.rawValue) {
        if goAwayReason == nil { goAwayReason = reason }
        _ = nghttp2_session_terminate_session(session, code)
    }

    /// Resets a stream (the peer's side failed, gave up, or was cancelled).
    public func reset(stream: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// A data provider pulling a stream's outgoing body from `bodyData`.
    static var bodyProvider: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readBodyData)
    }

    // MARK: - From nghttp2's callbacks (the side overrides what is its own)

    fileprivate func beginHeaders(stream: Int32) {
        decoder.begin(stream: stream)
    }

    /// One decoded field of the head being read. False resets the stream (too large).
    fileprivate func header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        decoder.add(stream: stream, name: name, value: value, limit: maxHeaderListBytes)
    }

    /// A head or trailers are decoded (`decoder` holds them).
    func headersComplete(stream: Int32, category: nghttp2_headers_category, endStream: Bool) {}
    /// A body ended with a DATA frame.
    func dataEnded(stream: Int32) {}
    /// Body bytes, valid during the call.
    func data(stream: Int32, bytes: UnsafeRawBufferPointer) {}
    func closed(stream: Int32, errorCode: UInt32) {}
    /// The peer reset a stream.
    func resetReceived() {}
    /// Bytes from the peer before nghttp2 reads them: false when the side ended the connection
    /// over them (`terminate`), and nghttp2 is not to read them.
    func admit(_ bytes: UnsafeRawBufferPointer) -> Bool { true }
    /// Outgoing body bytes, as nghttp2's data source read callback returns them.
    func bodyData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
}

// MARK: - nghttp2 callbacks (C functions: the session comes back through `user_data`)

/// Calls `body` with the session nghttp2 passes back, without retaining it (it is running).
private func withOwner<T>(_ data: UnsafeMutableRawPointer?, _ body: (H2Session) -> T) -> T {
    // Safe because nghttp2 passes back the user data the session was created with.
    Unmanaged<H2Session>.fromOpaque(data.unsafelyUnwrapped)._withUnsafeGuaranteedRef(body)
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    withOwner(data) { $0.beginHeaders(stream: frame.pointee.hd.stream_id) }
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, data in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    let accepted = withOwner(data) {
        $0.header(stream: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: nameLength),
                  value: UnsafeRawBufferPointer(start: value, count: valueLength))
    }
    // Resets this stream only; the HPACK state stays in step.
    return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
}

private let onFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, data in
    guard let frame else { return 0 }
    let header = frame.pointee.hd
    let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(header.type) {
    case NGHTTP2_HEADERS.rawValue:
        withOwner(data) { $0.headersComplete(stream: header.stream_id, category: frame.pointee.headers.cat, endStream: endStream) }
    case NGHTTP2_DATA.rawValue where endStream:
        withOwner(data) { $0.dataEnded(stream: header.stream_id) }
    case NGHTTP2_RST_STREAM.rawValue:
        withOwner(data) { $0.resetReceived() }
    default:
        break
    }
    return 0
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, bytes, count, data in
    withOwner(data) { $0.data(stream: stream, bytes: UnsafeRawBufferPointer(start: bytes, count: count)) }
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, stream, errorCode, data in
    withOwner(data) { $0.closed(stream: stream, errorCode: errorCode) }
    return 0
}

private let readBodyData: nghttp2_data_source_read_callback = { _, stream, buffer, length, flags, _, data in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return withOwner(data) { $0.bodyData(stream: stream, into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags) }
}
