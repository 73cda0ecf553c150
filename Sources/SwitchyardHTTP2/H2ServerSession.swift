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
public final class H2ServerSession: H2Session {
    /// Safe unowned: the delegate owns the session (the connection, or a test), so it outlives
    /// every callback; no reference counting per callback.
    public unowned(unsafe) var delegate: H2ServerSessionDelegate?
    public let limits: H2Limits
    /// Rapid reset: RST_STREAM frames allowed (`limits.resetBurst`, `limits.resetsPerSecond`);
    /// over budget means GOAWAY ENHANCE_YOUR_CALM.
    private var resets: TokenBucket
    /// The same for frames that carry no request (`limits.overheadFrameBurst`, …), found by
    /// `scanner` in the bytes before nghttp2 reads them.
    private var overheadFrames: TokenBucket
    private var scanner = H2FrameScanner(prefaceBytes: 24)
    /// The pseudo-header fields of a request, in the order `H2RequestView` reads them (one
    /// array for every session).
    private static let pseudoNames: [StaticString] = [":method", ":scheme", ":authority", ":path"]

    /// `builder`: shared by the sessions of one thread (a head is built and submitted in one go).
    /// `allocator`: nghttp2's memory from that thread's free lists (nil: malloc).
    public init(limits: H2Limits = H2Limits(), builder: H2HeadBuilder = H2HeadBuilder(), allocator: H2Allocator? = nil) throws(H2Error) {
        self.limits = limits
        let now = monotonicSeconds()
        resets = TokenBucket(burst: limits.resetBurst, perSecond: limits.resetsPerSecond, now: now)
        overheadFrames = TokenBucket(burst: limits.overheadFrameBurst, perSecond: limits.overheadFramesPerSecond, now: now)
        let settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: limits.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: limits.streamWindowBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(limits.maxHeaderListBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE.rawValue), value: limits.headerTableBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        try super.init(
            server: true, pseudoNames: Self.pseudoNames, builder: builder, allocator: allocator,
            maxHeaderListBytes: limits.maxHeaderListBytes, settings: settings
        ) { option in
            nghttp2_option_set_no_closed_streams(option, 1)
            // nghttp2's own reset limit (GOAWAY INTERNAL_ERROR) stays as a backstop behind ours.
            nghttp2_option_set_stream_reset_rate_limit(option, limits.resetBurst * 2, limits.resetsPerSecond * 2)
            nghttp2_option_set_max_continuations(option, limits.maxContinuations)
            nghttp2_option_set_max_outbound_ack(option, limits.maxQueuedAcks)
        }
    }

    /// Queues a response head; the body (unless `hasBody` is false) is pulled from the
    /// delegate's `h2ResponseData`. Fields must be lowercase, without connection-specific ones.
    public func respond(stream: Int32, status: Int, fields: [H2Field], hasBody: Bool) throws(H2Error) {
        beginResponse(status: status)
        builder.add(fields)
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
                var provider = Self.bodyProvider
                return nghttp2_submit_response(session, stream, list, count, &provider)
            }
            return nghttp2_submit_response(session, stream, list, count, nil)
        }
        guard result == 0 else { throw H2Error(code: result, String(cString: nghttp2_strerror(result))) }
    }

    /// A trailer field, from the delegate's `h2ResponseTrailers`; `lowercase` folds the name.
    public func trailerField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, lowercase: Bool = false) {
        builder.add(name: name, value: value, lowercase: lowercase)
    }

    /// Graceful shutdown: GOAWAY naming the last stream taken; streams up to it finish.
    public func goAway(_ reason: H2GoAwayReason) {
        if goAwayReason == nil { goAwayReason = reason }
        let last = nghttp2_session_get_last_proc_stream_id(session)
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    // MARK: - From nghttp2's callbacks

    override func headersComplete(stream: Int32, category: nghttp2_headers_category, endStream: Bool) {
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

    override func resetReceived() {
        if !resets.take(now: monotonicSeconds()) { terminate(.rapidReset) }
    }

    override func admit(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard goAwayReason != .overheadFrames else { return false }
        let count = scanner.overheadFrames(in: bytes)
        guard count > 0, !overheadFrames.take(count, now: monotonicSeconds()) else { return true }
        terminate(.overheadFrames)
        return false
    }

    override func dataEnded(stream: Int32) {
        delegate?.h2RequestEnd(stream: stream, trailers: [])
    }

    override func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        delegate?.h2RequestData(stream: stream, bytes: bytes)
    }

    override func closed(stream: Int32, errorCode: UInt32) {
        delegate?.h2StreamClosed(stream: stream, errorCode: errorCode)
    }

    override func bodyData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (count, end) = delegate?.h2ResponseData(stream: stream, into: buffer) else {
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        if end {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            builder.begin()
            if delegate?.h2ResponseTrailers(stream: stream) == true {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let result = builder.withList { list, fieldCount in nghttp2_submit_trailer(session, stream, list, fieldCount) }
                if result != 0 { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
            }
        }
        return count
    }
}

private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
