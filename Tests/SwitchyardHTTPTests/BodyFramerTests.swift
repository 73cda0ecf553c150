import Testing
@testable import SwitchyardHTTP

/// What a framer made of a whole input fed in pieces of `step` bytes.
struct Framed: Equatable {
    var consumed = 0
    var data = ""
    var trailer = ""
    var complete = false
    var error: HTTPParseError?
}

/// Feeds `text` to a framer `step` bytes at a time, as a connection would: each call gets the
/// bytes not consumed yet, decoded in place; the output of each call is collected.
func frame(_ framing: BodyFraming, _ text: String, step: Int = 1, keepTrailers: Bool = true) -> Framed {
    var framer = BodyFramer(framing, keepTrailers: keepTrailers)
    var bytes = Array(text.utf8)
    var result = Framed()
    var available = 0
    while available < bytes.count {
        available = min(available + step, bytes.count)
        let offset = result.consumed
        let step = bytes.withUnsafeMutableBytes { framer.decode(UnsafeMutableRawBufferPointer(rebasing: $0[offset..<available])) }
        switch step {
        case .error(let error):
            result.error = error
            return result
        case .decoded(let decoded):
            let start = offset + decoded.skipped
            result.data += String(decoding: bytes[start..<(start + decoded.data)], as: UTF8.self)
            result.trailer += String(decoding: bytes[(start + decoded.data)..<(start + decoded.data + decoded.trailer)], as: UTF8.self)
            result.consumed += decoded.consumed
            result.complete = decoded.complete
            if decoded.complete { return result }
        }
    }
    return result
}

@Suite struct BodyFramerTests {
    @Test func contentLengthStopsAtTheEnd() {
        let result = frame(.contentLength(5), "helloGET / HTTP/1.1", step: 100)
        #expect(result == Framed(consumed: 5, data: "hello", complete: true))
    }

    @Test(arguments: [1, 2, 3, 7, 1000])
    func chunkedIsDecodedWithExtensionsDroppedAndTrailersKept(step: Int) {
        let body = "5;name=value\r\nhello\r\n1A ; q=\"a \\\"b\\\";c\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
            + "000\r\nX-Trailer: yes\r\nX-Other:\r\n\r\n"
        let result = frame(.chunked, body + "NEXT", step: step)
        #expect(result == Framed(
            consumed: body.utf8.count, data: "helloabcdefghijklmnopqrstuvwxyz",
            trailer: "X-Trailer: yes\r\nX-Other:\r\n\r\n", complete: true))
    }

    @Test(arguments: [1, 1000])
    func droppedTrailersLeaveTheFinalCRLF(step: Int) {
        let result = frame(.chunked, "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", step: step, keepTrailers: false)
        #expect(result == Framed(consumed: 21, data: "abc", trailer: "\r\n", complete: true))
    }

    @Test func emptyChunkedBody() {
        #expect(frame(.chunked, "0\r\n\r\nGET", step: 100) == Framed(consumed: 5, trailer: "\r\n", complete: true))
    }

    @Test(arguments: [
        "x\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",  // bare LF after the size
        "5\r\nhello\n0\r\n\r\n",  // bare LF after the data
        "5\r\nhello\r\n0\r\n\nGET /smuggled HTTP/1.1\r\n\r\n",  // bare LF ends the trailer section
        "5\r\nhello\r\n0\n\r\n",
        "5\r\nhello\r\n0\r\nX: y\n\r\n",  // bare LF after a trailer
        "5\r\nhello\r\n0\r\nX: y\r\n\n",
        "5\rhello\r\n0\r\n\r\n",  // bare CR
        " 5\r\nhello\r\n0\r\n\r\n",  // whitespace before the size
        "5 \r\nhello\r\n0\r\n\r\n",  // whitespace after the size, no extension
        "5;\r\nhello\r\n0\r\n\r\n",  // extension without a name
        "5;a \r\nhello\r\n0\r\n\r\n",  // whitespace before CRLF
        "5;a=\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\r\nhello\r\n0\r\n\r\n",  // unterminated quoted string
        "5;a=b\nhello\r\n0\r\n\r\n",  // bare LF in an extension
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "1234567890123456\r\n",  // more digits than allowed
        "-5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nBad\u{1}Trailer: x\r\n\r\n",
        "5\r\nhello\r\n0\r\nX: a\u{1}b\r\n\r\n",
        "5\r\nhello\r\n0\r\nX : y\r\n\r\n",  // whitespace before the colon
        "5\r\nhello\r\n0\r\nX: y\r\n folded\r\n\r\n",  // obs-fold
        "5\r\nhello\r\n0\r\n: y\r\n\r\n",  // empty name
    ])
    func refusesMalformedChunkedBodies(_ body: String) {
        for step in [1, 1000] {
            #expect(frame(.chunked, body, step: step).error != nil, "accepted \(body.debugDescription) in steps of \(step)")
        }
    }

    @Test func boundsExtensionsAndTrailers() {
        let longExtension = "5;a=" + String(repeating: "b", count: BodyFramer.maxExtensionBytes) + "\r\nhello\r\n0\r\n\r\n"
        #expect(frame(.chunked, longExtension, step: 512).error != nil)
        let longTrailer = "0\r\nX: " + String(repeating: "t", count: BodyFramer.maxTrailerBytes) + "\r\n\r\n"
        #expect(frame(.chunked, longTrailer, step: 512).error != nil)
    }

    @Test func untilCloseTakesEverything() {
        let result = frame(.untilClose, "anything at all", step: 4)
        #expect(result == Framed(consumed: 15, data: "anything at all", complete: false))
    }
}
