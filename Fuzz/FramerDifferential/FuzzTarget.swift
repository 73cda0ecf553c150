/// libFuzzer target: `BodyFramer` (the proxy's streaming chunked decoder) against
/// `StrictChunkedReference`, in both directions.
///
/// Decoding (what a peer sends to the proxy): the input is fed to the framer in pieces whose
/// sizes come from the input's first byte, as reads from a socket would split it; the framer
/// must agree with the reference on error / incomplete / complete, on where the body ends, on
/// the data and on the trailer section. Encoding (what the proxy sends on): the decoded pieces
/// are re-encoded with `ChunkedEncoder`, and the reference must read back the same data and
/// trailers from canonical framing, with nothing left over.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFramerDifferential(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let control = bytes[0]
    let input = Array(UnsafeBufferPointer(start: bytes + 1, count: size - 1))
    let keepTrailers = control & 0x80 != 0
    let expected = StrictChunkedReference.decode(input)
    let framed = decodeInPieces(input, seed: control & 0x7F, keepTrailers: keepTrailers)

    switch (expected, framed.outcome) {
    case (.error, .error):
        return 0
    case (.incomplete(let data), .incomplete):
        check(framed.data == data, "incomplete: data differs", input)
    case (.complete(let consumed, let data, let trailers, _), .complete(let framedConsumed)):
        check(framedConsumed == consumed, "complete: consumed \(framedConsumed), reference \(consumed)", input)
        check(framed.data == data, "complete: data differs", input)
        check(framed.tail == (keepTrailers ? trailers : []) + [13, 10], "complete: trailer section differs", input)
    default:
        fail("framer \(framed.outcome), reference \(expected)", input)
    }
    checkReencoding(framed, keepTrailers: keepTrailers, input)
    return 0
}

struct Framed {
    enum Outcome { case error, incomplete, complete(consumed: Int) }
    var outcome = Outcome.incomplete
    /// Data as the framer handed it out, one piece per call.
    var pieces: [[UInt8]] = []
    var data: [UInt8] { pieces.flatMap { $0 } }
    var tail: [UInt8] = []
}

/// Feeds `input` to a framer as a connection would: each call gets the bytes not consumed yet
/// up to how far the input has "arrived", decodes them in place, and hands out its output.
func decodeInPieces(_ input: [UInt8], seed: UInt8, keepTrailers: Bool) -> Framed {
    var framer = BodyFramer(.chunked, keepTrailers: keepTrailers)
    var buffer = input
    var result = Framed()
    var consumed = 0
    var arrived = 0
    var random = UInt32(seed) &* 2_654_435_761 | 1
    while arrived < buffer.count {
        random = random &* 1_103_515_245 &+ 12345
        arrived = min(buffer.count, arrived + 1 + Int(random >> 16) % (seed % 4 == 0 ? 4096 : 17))
        let start = consumed
        let step = buffer.withUnsafeMutableBytes { framer.decode(UnsafeMutableRawBufferPointer(rebasing: $0[start..<arrived])) }
        switch step {
        case .error:
            result.outcome = .error
            return result
        case .decoded(let decoded):
            check(decoded.consumed <= arrived - start, "consumed more than it was given", input)
            check(decoded.skipped + decoded.data + decoded.trailer <= decoded.consumed, "output beyond what was consumed", input)
            check(decoded.complete || decoded.consumed == arrived - start, "stopped early without completing", input)
            let outputStart = start + decoded.skipped
            if decoded.data > 0 { result.pieces.append(Array(buffer[outputStart..<(outputStart + decoded.data)])) }
            result.tail += buffer[(outputStart + decoded.data)..<(outputStart + decoded.data + decoded.trailer)]
            consumed += decoded.consumed
            if decoded.complete {
                result.outcome = .complete(consumed: consumed)
                return result
            }
        }
    }
    return result
}

/// Re-encodes what the framer decoded and reads it back with the reference.
func checkReencoding(_ framed: Framed, keepTrailers: Bool, _ input: [UInt8]) {
    if case .error = framed.outcome { return }
    var encoder = ChunkedEncoder()
    var encoded: [UInt8] = []
    for piece in framed.pieces {
        encoder.startChunk(size: piece.count) { encoded += $0 }
        encoded += piece
        encoder.sent(piece.count)
    }
    guard case .complete = framed.outcome else {
        check(StrictChunkedReference.decode(encoded) == .incomplete(data: framed.data), "re-encoded partial body reads back differently", input)
        return
    }
    encoder.finish { encoded += $0 }
    encoded += framed.tail
    guard case .complete(let consumed, let data, let trailers, let canonical) = StrictChunkedReference.decode(encoded) else {
        fail("the re-encoded body is not a complete chunked body", input)
    }
    check(consumed == encoded.count, "the re-encoded body has bytes after its end", input)
    check(data == framed.data, "the re-encoded body carries other data", input)
    check(trailers + [13, 10] == framed.tail, "the re-encoded body carries other trailers", input)
    check(canonical, "the re-encoded framing is not canonical", input)
}

func check(_ condition: Bool, _ message: @autoclosure () -> String, _ input: [UInt8]) {
    if !condition { fail(message(), input) }
}

func fail(_ message: String, _ input: [UInt8]) -> Never {
    let shown = String(decoding: input.prefix(300), as: UTF8.self).debugDescription
    fatalError("disagreement: \(message)\ninput: \(shown)")
}
