/// Writes chunk framing (RFC 9112 §7.1) around body data the caller sends itself, in canonical
/// form: lowercase hex sizes without leading zeros, no extensions.
///
///     startChunk(size: n)  →  [CRLF closing the previous chunk] hex(n) CRLF   (then n data bytes)
///     finish()             →  [CRLF closing the previous chunk] 0 CRLF        (then the trailer
///                                                                            section and CRLF)
public struct ChunkedEncoder: Sendable {
    /// Data bytes of the current chunk that have not been sent yet.
    public private(set) var remainingInChunk = 0
    /// A data chunk was started whose closing CRLF has not been written yet.
    private var chunkOpen = false
    /// The last chunk has been written.
    public private(set) var isFinished = false

    public init() {}

    /// The framing that goes before `size` (> 0) data bytes.
    public mutating func startChunk(size: Int, _ emit: (UnsafeRawBufferPointer) -> Void) {
        precondition(size > 0 && remainingInChunk == 0 && !isFinished)
        var line: (UInt64, UInt64, UInt64) = (0, 0, 0)  // CRLF, up to 16 hex digits, CRLF
        withUnsafeMutableBytes(of: &line) { scratch in
            var count = 0
            if chunkOpen {
                scratch[0] = ASCII.cr
                scratch[1] = ASCII.lf
                count = 2
            }
            var digits = 1
            while digits < 16, size >> (4 * digits) != 0 { digits += 1 }
            let alphabet: StaticString = "0123456789abcdef"
            for index in 0..<digits {
                scratch[count + index] = alphabet.utf8Start[size >> (4 * (digits - 1 - index)) & 0xF]
            }
            count += digits
            scratch[count] = ASCII.cr
            scratch[count + 1] = ASCII.lf
            emit(UnsafeRawBufferPointer(rebasing: scratch[0..<(count + 2)]))
        }
        remainingInChunk = size
        chunkOpen = true
    }

    /// `count` data bytes of the current chunk went out.
    public mutating func sent(_ count: Int) {
        precondition(count <= remainingInChunk)
        remainingInChunk -= count
    }

    /// The last chunk; the trailer section (validated field lines, then CRLF) follows it.
    public mutating func finish(_ emit: (UnsafeRawBufferPointer) -> Void) {
        precondition(remainingInChunk == 0 && !isFinished)
        let last: StaticString = chunkOpen ? "\r\n0\r\n" : "0\r\n"
        emit(UnsafeRawBufferPointer(start: last.utf8Start, count: last.utf8CodeUnitCount))
        chunkOpen = false
        isFinished = true
    }
}
