import SwitchyardHTTP
import SwitchyardIO
import SwitchyardTesting
import Testing
@testable import SwitchyardProxy

/// Runs bytes through a `BodyRelay` with the worker's own `Relay.pump`: decode what arrived,
/// then send what it releases to a peer that takes at most `window` bytes per write and then
/// blocks until the next turn.
private func relay(_ framing: BodyFraming, arrivals: [String], window: Int, keepTrailers: Bool = true) -> (sent: String, rest: String, finished: Bool, error: HTTPParseError?) {
    var body = BodyRelay(framing, keepTrailers: keepTrailers)
    let source = ByteBuffer(capacity: 64)
    let head = ByteBuffer(capacity: 4096)
    let peer = FakeTransport(window: window, room: 0)
    var written = 0
    for arrival in arrivals {
        source.append(arrival)
        if let error = body.decode(source) { return (peer.writtenText, "", false, error) }
        var done = false
        while !done {
            peer.room = window
            done = (try? Relay.pump(&body, head: head, source: source, to: peer, written: &written)) ?? true
        }
    }
    #expect(written == peer.written.count)
    return (peer.writtenText, String(decoding: source.readableBytes, as: UTF8.self), body.isFinished, nil)
}

/// Reads a chunked body that must be in canonical form (lowercase hex sizes without leading
/// zeros, no extensions); nil if it is not.
private func canonicalChunks(_ text: String) -> (data: String, trailers: String)? {
    var bytes = Array(text.utf8)[...]
    var data: [UInt8] = []
    func line() -> String? {
        guard let end = bytes.indices.first(where: { bytes[$0] == 13 && bytes.index(after: $0) < bytes.endIndex && bytes[$0 + 1] == 10 }) else { return nil }
        defer { bytes = bytes[(end + 2)...] }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
    while let sizeLine = line() {
        guard let size = Int(sizeLine, radix: 16), String(size, radix: 16) == sizeLine else { return nil }
        if size == 0 {
            guard bytes.count >= 2, bytes.suffix(2).elementsEqual([13, 10]) else { return nil }
            return (String(decoding: data, as: UTF8.self), String(decoding: bytes.dropLast(2), as: UTF8.self))
        }
        guard bytes.count >= size + 2 else { return nil }
        data += bytes.prefix(size)
        bytes = bytes.dropFirst(size)
        guard line() == "" else { return nil }
    }
    return nil
}

@Suite struct BodyRelayTests {
    @Test(arguments: [1, 3, 64, 4096])
    func chunkedBodiesLeaveInCanonicalFraming(window: Int) {
        let result = relay(.chunked, arrivals: ["5;a=b\r\nhel", "lo\r\n00A\r\n0123456789\r", "\n0;x\r\nT: 1\r\n\r\nGET / HTTP/1.1"], window: window)
        #expect(result.error == nil)
        #expect(result.finished)
        #expect(result.rest == "GET / HTTP/1.1", "the next request stays in the buffer")
        let decoded = canonicalChunks(result.sent)
        #expect(decoded?.data == "hello0123456789")
        #expect(decoded?.trailers == "T: 1\r\n")
    }

    @Test func smallChunkedBodyGoesOutInOneHead() {
        let result = relay(.chunked, arrivals: ["3\r\nabc\r\n0\r\n\r\n"], window: 1 << 20)
        #expect(result.sent == "3\r\nabc\r\n0\r\n\r\n")
        #expect(result.finished)
    }

    @Test func trailersAreDroppedWhenNotAskedFor() {
        let result = relay(.chunked, arrivals: ["3\r\nabc\r\n0\r\nX-A: 1\r\n\r\n"], window: 7, keepTrailers: false)
        #expect(result.sent == "3\r\nabc\r\n0\r\n\r\n")
    }

    @Test func malformedFramingIsAnErrorAndNothingOfItLeaves() {
        let result = relay(.chunked, arrivals: ["5\r\nhello\r\n0\r\n\nGET /smuggled HTTP/1.1\r\n\r\n"], window: 4096)
        #expect(result.error != nil)
        #expect(result.sent == "")
    }

    @Test func contentLengthBodiesPassAsTheyAre() {
        let result = relay(.contentLength(10), arrivals: ["01234", "56789NEXT"], window: 3)
        #expect(result.sent == "0123456789")
        #expect(result.rest == "NEXT")
        #expect(result.finished)
    }
}

@Suite struct EndpointSetTests {
    @Test func holdsEveryIndexUpToTheCapacity() {
        var set = EndpointSet()
        for index in stride(from: 0, to: EndpointSet.capacity, by: 3) { set.insert(index) }
        for index in 0..<EndpointSet.capacity {
            #expect(set.contains(index) == (index % 3 == 0))
        }
    }
}
