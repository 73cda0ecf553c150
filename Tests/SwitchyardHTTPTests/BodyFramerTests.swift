import Testing
@testable import SwitchyardHTTP

/// Feeds `text` to a framer in pieces of `step` bytes; returns the body length and whether it ended.
func frame(_ framing: BodyFraming, _ text: String, step: Int = 1) -> (consumed: Int, complete: Bool, error: HTTPParseError?) {
    var framer = BodyFramer(framing)
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + step, bytes.count)
        let step = bytes[offset..<end].withUnsafeBytes { framer.scan($0) }
        switch step {
        case .body(let count): offset += count
        case .end(let count): return (offset + count, true, nil)
        case .error(let error): return (offset, false, error)
        }
        if offset < end { break }
    }
    return (offset, framer.isComplete, nil)
}

@Suite struct BodyFramerTests {
    @Test func contentLengthStopsAtTheEnd() {
        let result = frame(.contentLength(5), "helloGET / HTTP/1.1", step: 100)
        #expect(result.consumed == 5)
        #expect(result.complete)
    }

    @Test(arguments: [1, 3, 1000])
    func chunkedWithExtensionsAndTrailers(step: Int) {
        let body = "5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n"
        let result = frame(.chunked, body + "NEXT", step: step)
        #expect(result.error == nil)
        #expect(result.complete)
        #expect(result.consumed == body.utf8.count)
    }

    @Test(arguments: [
        "x\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "1234567890123456\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nBad\u{1}Trailer\r\n\r\n",
    ])
    func refusesBadChunks(_ body: String) {
        #expect(frame(.chunked, body).error != nil, "accepted \(body.debugDescription)")
    }

    @Test func untilCloseTakesEverything() {
        let result = frame(.untilClose, "anything at all", step: 4)
        #expect(result.consumed == 15)
        #expect(result.complete == false)
    }
}
