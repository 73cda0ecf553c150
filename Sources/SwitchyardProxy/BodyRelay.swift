import SwitchyardHTTP
import SwitchyardIO

/// One direction of a message body on its way through the proxy.
///
/// The peer's bytes are decoded in the buffer they were read into (`BodyFramer`); what leaves
/// is built from what was parsed. A chunked body goes out with chunk framing the proxy writes
/// itself — canonical sizes, no extensions, the validated trailer section — so the next hop
/// never sees a framing byte this proxy did not parse as part of this message. Content-Length,
/// close-delimited and tunnelled bytes go out as they came.
///
///     source buffer: [ data | tail | bytes after this body (next request) ]
///                      │      └─ after the last chunk: trailer fields, CRLF
///                      └─ sent as chunks: size CRLF data CRLF
struct BodyRelay {
    private var framer: BodyFramer
    private let chunked: Bool
    /// Decoded body bytes at the front of the source buffer, not sent yet.
    private(set) var data = 0
    /// Trailer section bytes right after them (chunked only), sent after the last chunk.
    private(set) var tail = 0
    /// The decoder has seen the end of the body.
    private(set) var complete: Bool
    /// Chunk framing for what leaves (chunked bodies only).
    private var encoder = ChunkedEncoder()

    /// Body bytes up to this size are copied behind the head (or chunk framing) in front of
    /// them, here and in `Worker.relay`, so one send carries both (see `relay` for why).
    static let copyLimit = 2048
    /// Room kept behind copied chunk data for the CRLF and last-chunk framing that may follow.
    private static let framingAfterData = 7

    /// How the body leaves.
    enum Output {
        /// As it came: a chunked body with chunk framing of the proxy's own, others unchanged.
        case asReceived
        /// Decoded data only, for HTTP/2 DATA frames; a trailer section stays in `tail`.
        case data
        /// Data that arrives unframed (HTTP/2 DATA, read `.untilClose`) leaves with chunk
        /// framing, for an HTTP/1.1 backend when the length is not known; `endOfInput(trailer:)`
        /// ends it.
        case chunked
    }

    init(_ framing: BodyFraming, keepTrailers: Bool = true, output: Output = .asReceived) {
        framer = BodyFramer(framing, keepTrailers: keepTrailers)
        chunked = output == .chunked || (output == .asReceived && framing == .chunked)
        complete = framer.isComplete
    }

    /// Body bytes waiting in the source buffer.
    var buffered: Int { data + tail }

    /// The whole body has been decoded and sent.
    var isFinished: Bool { complete && data == 0 && tail == 0 && (!chunked || encoder.isFinished) }

    /// Decodes the bytes of `source` after the ones already taken.
    mutating func decode(_ source: ByteBuffer) -> HTTPParseError? {
        let start = data + tail
        guard !complete, source.readableCount > start else { return nil }
        let step = framer.decode(source.mutableReadableBytes(from: start))
        switch step {
        case .error(let error):
            return error
        case .decoded(let decoded):
            // Drop the framing around the output, the later range first.
            let outputEnd = decoded.skipped + decoded.data + decoded.trailer
            source.removeReadable(at: start + outputEnd, count: decoded.consumed - outputEnd)
            source.removeReadable(at: start, count: decoded.skipped)
            data += decoded.data
            tail += decoded.trailer
            complete = decoded.complete
            return nil
        }
    }

    /// A close-delimited body ends when its sender closes.
    mutating func endOfInput() {
        complete = true
    }

    /// An unframed body ends, its last `trailer` bytes in the source being the trailer section
    /// for the chunked output (field lines, then CRLF).
    mutating func endOfInput(trailer: Int) {
        complete = true
        data -= trailer
        tail += trailer
    }

    /// The trailer section is taken by the caller (HTTP/2 output: it becomes a HEADERS frame).
    mutating func takeTrailer() {
        tail = 0
    }

    /// Writes the framing that must go before the next body bytes into `head` (copying small
    /// data behind it) and returns how many bytes at the front of `source` may follow `head` now.
    mutating func prepare(head: ByteBuffer, source: ByteBuffer) -> Int {
        guard chunked else { return data }
        while true {
            if encoder.remainingInChunk > 0 { return encoder.remainingInChunk }
            if data > 0 {
                encoder.startChunk(size: data) { head.append($0) }
                if data <= Self.copyLimit, data + Self.framingAfterData <= head.writableCount {
                    head.append(UnsafeRawBufferPointer(rebasing: source.readableBytes[0..<data]))
                    source.consume(data)
                    encoder.sent(data)
                    data = 0
                    continue
                }
                return data
            }
            if complete && !encoder.isFinished {
                encoder.finish { head.append($0) }
                if tail <= head.writableCount {
                    head.append(UnsafeRawBufferPointer(rebasing: source.readableBytes[0..<tail]))
                    source.consume(tail)
                    tail = 0
                }
            }
            return encoder.isFinished ? tail : 0
        }
    }

    /// Whether `prepare` may release more after what it returned last went out: only a
    /// chunked body has framing still to write.
    var mayHaveMore: Bool {
        chunked && (data > 0 || tail > 0 || (complete && !encoder.isFinished))
    }

    /// `count` bytes from the front of the source went out after the head.
    mutating func sent(_ count: Int) {
        if encoder.isFinished {
            tail -= count
        } else {
            data -= count
            if chunked { encoder.sent(count) }
        }
    }
}
