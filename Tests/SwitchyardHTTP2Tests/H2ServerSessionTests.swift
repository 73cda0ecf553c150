import CNGHTTP2
import Testing
@testable import SwitchyardHTTP2

/// A connection as the tests drive it: records what the session reports and answers from
/// scripted responses.
final class RecordingConnection: H2ServerSessionDelegate {
    struct Stream {
        var head = H2RequestHead()
        var endStream = false
        var body: [UInt8] = []
        var trailers: [H2Field] = []
        var ended = false
        var closeCode: UInt32?
    }

    let session: H2ServerSession
    var streams: [Int32: Stream] = [:]
    /// Response bodies waiting to be pulled, per stream; `finished` marks the last bytes.
    var outgoing: [Int32: (bytes: [UInt8], finished: Bool)] = [:]
    /// Answer each request as soon as its head arrives.
    var answer: ((Int32, H2RequestHead) -> (status: Int, body: [UInt8]?))?
    /// Pass request body bytes on (consume them) as they arrive.
    var consumeAtOnce = true
    /// Trailer fields to send after a stream's response body.
    var trailers: [Int32: [H2Field]] = [:]

    init(limits: H2Limits = H2Limits(), allocator: H2Allocator? = nil) throws {
        session = try H2ServerSession(limits: limits, allocator: allocator)
        session.delegate = self
    }

    func h2Request(stream: Int32, head view: H2RequestView, endStream: Bool) {
        let head = view.copied
        streams[stream, default: Stream()].head = head
        streams[stream]!.endStream = endStream
        streams[stream]!.ended = endStream
        if let answer, case let (status, body) = answer(stream, head) {
            if let body { outgoing[stream] = (body, true) }
            try? session.respond(stream: stream, status: status, fields: [H2Field("content-type", "text/plain")], hasBody: body != nil)
        }
    }

    func h2RequestData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        streams[stream, default: Stream()].body += bytes
        if consumeAtOnce { session.consume(stream: stream, bytes: bytes.count) }
    }

    func h2RequestEnd(stream: Int32, trailers: [H2Field]) {
        streams[stream, default: Stream()].ended = true
        streams[stream]!.trailers = trailers
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        streams[stream, default: Stream()].closeCode = errorCode
    }

    func h2ResponseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard var pending = outgoing[stream] else { return nil }
        if pending.bytes.isEmpty && !pending.finished { return nil }
        let count = min(buffer.count, pending.bytes.count)
        pending.bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
        pending.bytes.removeFirst(count)
        outgoing[stream] = pending
        return (count, pending.finished && pending.bytes.isEmpty)
    }

    func h2ResponseTrailers(stream: Int32) -> Bool {
        guard let fields = trailers.removeValue(forKey: stream) else { return false }
        for field in fields {
            field.name.withUnsafeBytes { name in field.value.withUnsafeBytes { session.trailerField(name: name, value: $0) } }
        }
        return true
    }
}

@Suite struct H2ServerSessionTests {
    @Test func aRequestReachesTheConnectionAndItsResponseTheClient() throws {
        let server = try RecordingConnection()
        server.answer = { _, head in (200, Array("hello from \(String(decoding: head.path, as: UTF8.self))".utf8)) }
        let client = H2TestClient()
        let stream = client.request(path: "/v1/generate?x=1", fields: [("authorization", "Bearer t"), ("x-anyscale-version", "v2")])
        #expect(client.exchange(with: server.session) == nil)
        let head = try #require(server.streams[stream]?.head)
        #expect(head.method == Array("GET".utf8))
        #expect(head.path == Array("/v1/generate?x=1".utf8))
        #expect(head.authority == Array("proxy.test".utf8))
        #expect(head.scheme == Array("http".utf8))
        #expect(head.field("authorization") == Array("Bearer t".utf8))
        #expect(head.field("x-anyscale-version") == Array("v2".utf8))
        #expect(server.streams[stream]?.endStream == true)
        let response = try #require(client.responses[stream])
        #expect(response.status == 200)
        #expect(response.fields == [H2Field("content-type", "text/plain")])
        #expect(String(decoding: response.body, as: UTF8.self) == "hello from /v1/generate?x=1")
        #expect(response.ended && response.closeCode == 0)
        #expect(server.streams[stream]?.closeCode == 0)
    }

    @Test func nghttp2TakesNoNewMemoryForSteadyStreams() throws {
        let allocator = H2Allocator()
        let server = try RecordingConnection(allocator: allocator)
        server.answer = { stream, _ in (200, Array("stream \(stream)".utf8)) }
        let client = H2TestClient()
        func round(_ count: Int) {
            let streams = (0..<count).map { client.request(path: "/\($0)", fields: [("x-field", "\($0)")]) }
            client.exchange(with: server.session)
            for stream in streams { #expect(client.responses[stream]?.body == Array("stream \(stream)".utf8)) }
        }
        round(50)  // the free lists fill
        let taken = allocator.systemAllocations
        #expect(taken > 0, "nghttp2 took its memory from the allocator")
        for _ in 0..<5 { round(50) }
        #expect(allocator.systemAllocations == taken, "recycled blocks served every later stream")
    }

    @Test func streamsOfOneConnectionAreSeparate() throws {
        let server = try RecordingConnection()
        server.answer = { stream, _ in (200, Array("stream \(stream)".utf8)) }
        let client = H2TestClient()
        let streams = (0..<20).map { client.request(path: "/\($0)") }
        client.exchange(with: server.session)
        for (index, stream) in streams.enumerated() {
            #expect(server.streams[stream]?.head.path == Array("/\(index)".utf8))
            #expect(client.responses[stream]?.body == Array("stream \(stream)".utf8))
        }
    }

    @Test func aRequestBodyOnlyFlowsAsTheConnectionConsumesIt() throws {
        let server = try RecordingConnection()
        server.consumeAtOnce = false
        let client = H2TestClient()
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0) }
        let stream = client.request(method: "POST", body: body)
        client.exchange(with: server.session)
        // The stream's window (64 KiB) is all a client may send before the proxy passes bytes on.
        let first = server.streams[stream]?.body.count ?? 0
        #expect(first > 0 && first <= 65535, "received \(first)")
        #expect(server.streams[stream]?.ended == false)
        // Each consume opens the window by as much: the rest arrives in steps.
        var consumed = 0
        for _ in 0..<20 {
            let received = server.streams[stream]!.body.count
            guard received < body.count else { break }
            server.session.consume(stream: stream, bytes: received - consumed)
            consumed = received
            client.exchange(with: server.session)
            #expect(server.streams[stream]!.body.count - consumed <= 65535, "never more than a window ahead")
        }
        #expect(server.streams[stream]?.body == body)
        #expect(server.streams[stream]?.ended == true)
    }

    @Test func responseBodiesWaitForTheirBytesAndTrailersFollow() throws {
        let server = try RecordingConnection()
        let client = H2TestClient()
        let stream = client.request(path: "/stream")
        client.exchange(with: server.session)
        // The response head goes out before any body byte exists (an SSE stream).
        server.outgoing[stream] = ([], false)
        try server.session.respond(stream: stream, status: 200, fields: [H2Field("content-type", "text/event-stream")], hasBody: true)
        client.exchange(with: server.session)
        #expect(client.responses[stream]?.status == 200)
        #expect(client.responses[stream]?.body.isEmpty == true)
        for event in 0..<3 {
            server.outgoing[stream] = (Array("data: \(event)\n\n".utf8), false)
            server.session.resume(stream: stream)
            client.exchange(with: server.session)
            #expect(client.responses[stream]?.body.count == 9 * (event + 1), "event \(event) arrived on its own")
        }
        server.trailers[stream] = [H2Field("grpc-status", "0")]
        server.outgoing[stream] = ([], true)
        server.session.resume(stream: stream)
        client.exchange(with: server.session)
        #expect(client.responses[stream]?.trailers == [H2Field("grpc-status", "0")])
        #expect(client.responses[stream]?.ended == true)
    }

    @Test func requestTrailersReachTheConnection() throws {
        let server = try RecordingConnection()
        let client = H2TestClient()
        let withTrailers = client.request(method: "POST", body: Array("abc".utf8), trailers: [("x-checksum", "900150983cd2")])
        let plain = client.request(method: "POST", body: Array("de".utf8))
        client.exchange(with: server.session)
        #expect(server.streams[withTrailers]?.body == Array("abc".utf8))
        #expect(server.streams[withTrailers]?.ended == true)
        #expect(server.streams[withTrailers]?.trailers == [H2Field("x-checksum", "900150983cd2")])
        // A body ending with END_STREAM on its last DATA frame ends the request without trailers.
        #expect(server.streams[plain]?.ended == true && server.streams[plain]?.trailers == [])
    }

    @Test func aHeadOverTheLimitResetsItsStreamOnly() throws {
        var limits = H2Limits()
        limits.maxHeaderListBytes = 1024
        let server = try RecordingConnection(limits: limits)
        server.answer = { _, _ in (200, []) }
        let client = H2TestClient()
        let big = client.request(fields: [("x-big", String(repeating: "a", count: 2000))])
        let small = client.request(path: "/small")
        client.exchange(with: server.session)
        #expect(server.streams[big]?.head.path.isEmpty ?? true, "the oversized head never reaches the connection")
        #expect(client.responses[big]?.closeCode == UInt32(NGHTTP2_INTERNAL_ERROR.rawValue))
        #expect(client.responses[small]?.status == 200, "the other stream is served")
    }

    @Test func rapidResetEndsTheConnectionWithGoAway() throws {
        var limits = H2Limits()
        limits.resetBurst = 10
        limits.resetsPerSecond = 1
        let server = try RecordingConnection(limits: limits)
        let client = H2TestClient()
        var failure: H2Error?
        var resets = 0
        for _ in 0..<50 where failure == nil && server.session.wantsRead {
            let stream = client.request()
            failure = client.exchange(with: server.session)
            client.reset(stream: stream)
            failure = failure ?? client.exchange(with: server.session)
            resets += 1
        }
        // nghttp2 sends GOAWAY and stops reading: the connection closes once that is out.
        #expect(failure == nil && !server.session.wantsRead, "the reset flood ended the connection")
        #expect(resets > 10 && resets < 15, "after the burst of 10: \(resets)")
        #expect(client.goAwayCode == UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
    }

    @Test func garbageInsteadOfThePrefaceIsAFatalError() throws {
        let server = try RecordingConnection()
        let client = H2TestClient()
        let error = client.raw(Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8), to: server.session)
        #expect(error != nil)
        #expect(server.streams.isEmpty)
    }

    @Test func goAwayLetsStreamsInFlightFinish() throws {
        let server = try RecordingConnection()
        let client = H2TestClient()
        let stream = client.request(path: "/slow")
        client.exchange(with: server.session)
        server.session.goAway(.drain)
        client.exchange(with: server.session)
        #expect(client.goAwayCode == 0)
        server.outgoing[stream] = (Array("done".utf8), true)
        try server.session.respond(stream: stream, status: 200, fields: [], hasBody: true)
        client.exchange(with: server.session)
        #expect(client.responses[stream]?.body == Array("done".utf8))
    }
}

/// Frames written byte by byte, for what a well-behaved client library will not send.
enum RawFrames {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    /// `:method GET`, `:scheme http`, `:path /` from HPACK's static table, `:authority a`.
    static let getHead: [UInt8] = [0x82, 0x86, 0x84, 0x41, 0x01, UInt8(ascii: "a")]
    static let settings = frame(type: 4, flags: 0, stream: 0, [])

    /// Writes out what the session queued (a GOAWAY among it); true when the session then
    /// wants to read no more, i.e. the connection ends.
    static func connectionEnds(_ session: H2ServerSession) -> Bool {
        while (try? session.send()) != nil {}
        return !session.wantsRead
    }
}

@Suite struct H2FloodTests {
    @Test func aContinuationFloodEndsTheConnection() throws {
        let server = try RecordingConnection()
        var bytes = RawFrames.preface + RawFrames.settings
        bytes += RawFrames.frame(type: 1, flags: 0, stream: 1, [RawFrames.getHead[0]])
        for byte in RawFrames.getHead.dropFirst() { bytes += RawFrames.frame(type: 9, flags: 0, stream: 1, [byte]) }
        for _ in 0..<20 { bytes += RawFrames.frame(type: 9, flags: 0, stream: 1, []) }
        let error = H2TestClient().raw(bytes, to: server.session)
        #expect(error != nil || RawFrames.connectionEnds(server.session), "more than 8 CONTINUATION frames end the connection")
        #expect(server.streams.isEmpty)
    }

    @Test func streamsBeyondTheLimitAreRefused() throws {
        var limits = H2Limits()
        limits.maxConcurrentStreams = 10
        let server = try RecordingConnection(limits: limits)
        var bytes = RawFrames.preface + RawFrames.settings
        // Our SETTINGS acknowledged first, as a real client does before it counts on them.
        bytes += RawFrames.frame(type: 4, flags: 1, stream: 0, [])
        for index in 0..<30 { bytes += RawFrames.frame(type: 1, flags: 0x04, stream: UInt32(2 * index + 1), RawFrames.getHead) }
        _ = H2TestClient().raw(bytes, to: server.session)
        #expect(server.streams.count <= 10, "\(server.streams.count) streams open")
    }

    @Test func framesOnStreamZeroAndBadPrefacesAreFatal() throws {
        let cases: [[UInt8]] = [
            RawFrames.preface + RawFrames.settings + RawFrames.frame(type: 1, flags: 0x05, stream: 0, RawFrames.getHead),
            RawFrames.preface + RawFrames.settings + RawFrames.frame(type: 0, flags: 0x01, stream: 0, [1, 2, 3]),
            RawFrames.preface + RawFrames.frame(type: 4, flags: 0, stream: 0, [0, 4, 0x80, 0, 0, 0]),  // window > 2^31-1
            Array("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".utf8),
        ]
        for bytes in cases {
            let server = try RecordingConnection()
            let error = H2TestClient().raw(bytes, to: server.session)
            #expect(error != nil || RawFrames.connectionEnds(server.session), "\(bytes.suffix(12))")
            #expect(server.streams.isEmpty)
        }
    }
}

/// An idle session gives nghttp2's frame buffer and its empty stream map back to the kernel,
/// and serves on from zero-filled pages.
@Suite struct H2SessionRestTests {
    private func served(_ server: RecordingConnection, by client: H2TestClient, bodyBytes: Int) -> Bool {
        let body = (0..<bodyBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        server.answer = { _, _ in (200, body) }
        let streams = (0..<3).map { _ in client.request(path: "/large") }
        guard client.exchange(with: server.session) == nil else { return false }
        return streams.allSatisfy { client.responses[$0]?.body == body && client.responses[$0]?.ended == true }
    }

    @Test func creatingASessionFindsItsFrameBufferAndStreamMap() throws {
        let server = try RecordingConnection(allocator: H2Allocator())
        let frameBuffer = try #require(server.session.frameBuffer, "nghttp2 took a block of a frame's payload or more")
        #expect(frameBuffer.requested >= 16384)
        // nghttp2 1.52: one more block of a page or more, the stream map's table.
        #expect(server.session.zeroWhenIdle.count == 1)
        #expect(try RecordingConnection().session.frameBuffer == nil, "without the allocator, nothing to give back")
    }

    @Test func anIdleSessionGivesItsPagesBackAndServesOn() throws {
        let server = try RecordingConnection(allocator: H2Allocator())
        let client = H2TestClient()
        #expect(served(server, by: client, bodyBytes: 50_000))
        let frameBuffer = try #require(server.session.frameBuffer)
        let streamMap = try #require(server.session.zeroWhenIdle.first)
        #expect(H2Allocator.residentBytes(frameBuffer) >= 16384, "full DATA frames went through it")
        #expect(H2Allocator.residentBytes(streamMap) > 0)

        server.session.restIfQuiet()  // the first tick after traffic only notes it
        #expect(H2Allocator.residentBytes(frameBuffer) >= 16384)
        server.session.restIfQuiet()
        #expect(H2Allocator.residentBytes(frameBuffer) == 0)
        #expect(H2Allocator.residentBytes(streamMap) == 0, "no stream left: the map is all zero")

        #expect(served(server, by: client, bodyBytes: 70_000), "the same connection serves on")
        server.session.restIfQuiet()
        server.session.restIfQuiet()
        #expect(H2Allocator.residentBytes(frameBuffer) == 0)
    }

    @Test func aSessionKeepsWhatItStillNeeds() throws {
        let server = try RecordingConnection(allocator: H2Allocator())
        let client = H2TestClient()
        #expect(served(server, by: client, bodyBytes: 20_000))
        let streamMap = try #require(server.session.zeroWhenIdle.first)
        // A stream left open (its response waits for body bytes): the map holds it.
        server.answer = nil
        _ = client.request(path: "/pending")
        #expect(client.exchange(with: server.session) == nil)
        server.session.restIfQuiet()
        server.session.restIfQuiet()
        #expect(H2Allocator.residentBytes(streamMap) > 0, "a map with a stream in it stays")

        // Frames waiting to be sent: the frame buffer may hold the next of them.
        let waiting = try RecordingConnection(allocator: H2Allocator())
        let frameBuffer = try #require(waiting.session.frameBuffer)
        _ = try waiting.session.send()  // the SETTINGS frame is written into the buffer
        waiting.session.restIfQuiet()
        waiting.session.restIfQuiet()
        #expect(H2Allocator.residentBytes(frameBuffer) > 0, "the buffer holds the SETTINGS frame until the next send")
    }
}
