import CNGHTTP2
import Testing
@testable import SwitchyardHTTP2

/// A backend connection as the tests drive it: sends scripted requests, records responses.
final class RecordingClient: H2ClientSessionDelegate {
    struct Response {
        var status = 0
        var fields: [H2Field] = []
        var headEnded = false
        var body: [UInt8] = []
        var trailers: [H2Field]?
        var ended = false
        var closeCode: UInt32?
    }

    let session: H2ClientSession
    var responses: [Int32: Response] = [:]
    var uploads: [Int32: [UInt8]] = [:]
    /// Pass response bytes on (consume them) as they arrive.
    var consumeAtOnce = true

    init(windowBytes: UInt32 = 65535, allocator: H2Allocator? = nil) throws {
        session = try H2ClientSession(allocator: allocator, windowBytes: windowBytes)
        session.delegate = self
    }

    /// Submits a request; `body` nil for none.
    func request(method: String = "POST", path: String, fields: [(String, String)] = [], body: [UInt8]? = nil) throws -> Int32 {
        func with<R>(_ text: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try Array(text.utf8).withUnsafeBytes(body)
        }
        with(method) { m in with("http") { s in with("backend.test") { a in with(path) { p in
            session.beginRequest(method: m, scheme: s, authority: a, path: p)
        } } } }
        for (name, value) in fields { with(name) { n in with(value) { v in session.requestField(name: n, value: v) } } }
        let stream = try session.submitRequest(hasBody: body != nil)
        if let body { uploads[stream] = body }
        return stream
    }

    func h2Response(stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool) {
        responses[stream, default: Response()].status = status
        responses[stream]!.fields = fields.copied
        responses[stream]!.headEnded = endStream
        if endStream { responses[stream]!.ended = true }
    }

    func h2ResponseData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        responses[stream, default: Response()].body += bytes
        if consumeAtOnce { session.consume(stream: stream, bytes: bytes.count) }
    }

    func h2ResponseEnd(stream: Int32, trailers: H2FieldsView?) {
        responses[stream, default: Response()].trailers = trailers?.copied
        responses[stream]!.ended = true
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        responses[stream, default: Response()].closeCode = errorCode
    }

    func h2RequestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard var pending = uploads[stream] else { return nil }
        let count = min(buffer.count, pending.count)
        pending.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
        pending.removeFirst(count)
        uploads[stream] = pending
        return (count, pending.isEmpty)
    }

    /// Moves bytes both ways until neither side has more to say.
    func exchange(with server: H2ServerSession) throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try session.send() {
                try server.receive(bytes)
                moved = true
            }
            while let bytes = try server.send() {
                try session.receive(bytes)
                moved = true
            }
        }
    }
}

@Suite struct H2ClientSessionTests {
    @Test func aCallWithABodyGetsItsResponseAndTrailers() throws {
        let server = try RecordingConnection()
        server.answer = { [unowned server] stream, head in
            server.trailers[stream] = [H2Field("grpc-status", "0"), H2Field("grpc-message", "")]
            return (200, Array("echo \(String(decoding: head.path, as: UTF8.self))".utf8))
        }
        let client = try RecordingClient()
        let body = Array(repeating: UInt8(7), count: 100_000)
        let stream = try client.request(path: "/svc/Echo", fields: [("content-type", "application/grpc"), ("te", "trailers")], body: body)
        try client.exchange(with: server.session)
        let seen = try #require(server.streams[stream])
        #expect(seen.head.method == Array("POST".utf8) && seen.head.authority == Array("backend.test".utf8))
        #expect(seen.head.field("content-type") == Array("application/grpc".utf8))
        #expect(seen.body == body, "the request body, over more than one window")
        let response = try #require(client.responses[stream])
        #expect(response.status == 200 && !response.headEnded)
        #expect(response.fields == [H2Field("content-type", "text/plain")])
        #expect(response.body == Array("echo /svc/Echo".utf8))
        #expect(response.trailers == [H2Field("grpc-status", "0"), H2Field("grpc-message", "")])
        #expect(response.ended && response.closeCode == 0)
        #expect(client.session.openStreams == 0)
    }

    @Test func aTrailersOnlyResponseEndsAtItsHead() throws {
        let server = try RecordingConnection()
        let client = try RecordingClient()
        let stream = try client.request(path: "/svc/Missing")
        try client.exchange(with: server.session)
        try server.session.respond(stream: stream, status: 200, fields: [H2Field("grpc-status", "12")], hasBody: false)
        try client.exchange(with: server.session)
        let response = try #require(client.responses[stream])
        #expect(response.status == 200 && response.headEnded && response.ended)
        #expect(response.fields == [H2Field("grpc-status", "12")])
        #expect(response.trailers == nil)
    }

    @Test func streamsAreMultiplexedUnderTheBackendsLimit() throws {
        var limits = H2Limits()
        limits.maxConcurrentStreams = 7
        let server = try RecordingConnection(limits: limits)
        server.answer = { stream, _ in (200, Array("stream \(stream)".utf8)) }
        let client = try RecordingClient()
        #expect(client.session.maxConcurrentStreams > 7, "no limit before the backend's SETTINGS")
        try client.exchange(with: server.session)
        #expect(client.session.maxConcurrentStreams == 7)
        let streams = try (0..<7).map { try client.request(method: "GET", path: "/\($0)") }
        #expect(client.session.openStreams == 7)
        try client.exchange(with: server.session)
        for stream in streams { #expect(client.responses[stream]?.body == Array("stream \(stream)".utf8)) }
        #expect(client.session.openStreams == 0)
    }

    @Test func theResponseWindowOpensOnlyAsTheConnectionConsumes() throws {
        let server = try RecordingConnection()
        server.answer = { _, _ in (200, Array(repeating: 1, count: 300_000)) }
        let client = try RecordingClient(windowBytes: 65535)
        client.consumeAtOnce = false
        let stream = try client.request(method: "GET", path: "/big")
        try client.exchange(with: server.session)
        #expect(client.responses[stream]?.body.count == 65535, "one window, then the backend waits")
        client.session.consume(stream: stream, bytes: 65535)
        try client.exchange(with: server.session)
        #expect(client.responses[stream]?.body.count == 2 * 65535)
    }

    @Test func aCancelledCallResetsTheBackendsStream() throws {
        let server = try RecordingConnection()
        let client = try RecordingClient()
        let stream = try client.request(path: "/svc/Slow", body: [0, 0, 0, 0, 0])
        try client.exchange(with: server.session)
        client.session.reset(stream: stream, errorCode: 8)
        try client.exchange(with: server.session)
        #expect(server.streams[stream]?.closeCode == 8, "CANCEL reaches the backend")
        #expect(client.responses[stream]?.closeCode == 8)
    }

    @Test func steadyCallsTakeNoNewMemory() throws {
        let allocator = H2Allocator()
        let server = try RecordingConnection()
        server.answer = { _, _ in (200, Array("ok".utf8)) }
        let client = try RecordingClient(allocator: allocator)
        func round() throws {
            let streams = try (0..<20).map { try client.request(method: "GET", path: "/\($0)", fields: [("x-n", "\($0)")]) }
            try client.exchange(with: server.session)
            for stream in streams { #expect(client.responses[stream]?.body == Array("ok".utf8)) }
        }
        try round()
        let taken = allocator.systemAllocations
        for _ in 0..<5 { try round() }
        #expect(allocator.systemAllocations == taken)
    }
}
