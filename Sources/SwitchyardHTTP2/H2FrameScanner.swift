/// Counts the frames in a client's byte stream that carry no request, by reading only frame
/// headers (RFC 9113 §4.1: 3 bytes length, type, flags, 4 bytes stream id) and skipping
/// payloads. It sees every frame, the ones nghttp2 ignores without a callback included (DATA
/// on a closed stream, unknown types), so the budget of such frames cannot be dodged.
///
/// Frames that carry a request are HEADERS, CONTINUATION, and DATA with payload or
/// END_STREAM; every other frame counts.
///
/// Pure and incremental: bytes may be split anywhere, nothing is allocated, and the work is
/// one step per header byte plus one per frame.
struct H2FrameScanner {
    /// Bytes still to skip: the connection preface first, then each frame's payload.
    private var skipping: Int
    /// Header bytes of the current frame read so far (0 to 8).
    private var headerIndex = 0
    private var length = 0
    private var type: UInt8 = 0
    private var flags: UInt8 = 0

    /// `prefaceBytes`: bytes before the first frame (a server's input starts with the
    /// client's 24-byte preface).
    init(prefaceBytes: Int) {
        skipping = prefaceBytes
    }

    /// The frames without a request whose 9-byte headers end in `bytes`.
    mutating func overheadFrames(in bytes: UnsafeRawBufferPointer) -> Int {
        var index = 0
        var count = 0
        while index < bytes.count {
            if skipping > 0 {
                let skipped = min(skipping, bytes.count - index)
                skipping -= skipped
                index += skipped
                continue
            }
            let byte = bytes[index]
            index += 1
            switch headerIndex {
            case 0: length = Int(byte)
            case 1, 2: length = length << 8 | Int(byte)
            case 3: type = byte
            case 4: flags = byte
            default: break
            }
            headerIndex += 1
            if headerIndex == 9 {
                // The header is whole: the frame counts, its payload is skipped.
                if Self.isOverhead(type: type, flags: flags, length: length) { count += 1 }
                headerIndex = 0
                skipping = length
            }
        }
        return count
    }

    static func isOverhead(type: UInt8, flags: UInt8, length: Int) -> Bool {
        switch type {
        case 0x0: length == 0 && flags & 0x1 == 0  // DATA: neither bytes nor END_STREAM
        case 0x1, 0x9: false  // HEADERS, CONTINUATION
        default: true  // PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, unknown
        }
    }
}
