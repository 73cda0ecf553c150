/// libFuzzer target: the server side of an HTTP/2 connection fed arbitrary bytes after the
/// client preface, in chunks of the size the first byte says, with a connection that answers
/// every request (body and trailers), consumes every body byte and drains the output after
/// each chunk, as the proxy will.
///
/// It must never trap; a fatal protocol error ends the input, as it ends the connection.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzH2Server(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let step = Int(bytes[0]) * 16 + 1
    guard let session = try? H2ServerSession(allocator: fuzzAllocator) else { return 0 }
    let connection = AnsweringConnection(session)
    let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    let input = preface + Array(UnsafeBufferPointer(start: bytes + 1, count: size - 1))
    input.withUnsafeBytes { feed(session, $0, step: step) }
    return 0
}

final class AnsweringConnection: H2ServerSessionDelegate {
    let session: H2ServerSession
    var remaining: [Int32: Int] = [:]

    init(_ session: H2ServerSession) {
        self.session = session
        session.delegate = self
    }

    func h2Request(stream: Int32, head: H2RequestView, endStream: Bool) {
        // Every field is read, as the proxy reads them.
        for index in 0..<head.fieldCount where head.name(at: index).count + head.value(at: index).count > head.listBytes {
            preconditionFailure("a field larger than its head")
        }
        remaining[stream] = 100
        try? session.respond(stream: stream, status: 200, fields: [H2Field("content-type", "text/plain")], hasBody: true)
    }

    func h2RequestData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        session.consume(stream: stream, bytes: bytes.count)
    }

    func h2RequestEnd(stream: Int32, trailers: [H2Field]) {}

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        remaining[stream] = nil
    }

    func h2ResponseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard let left = remaining[stream] else { return (0, true) }
        let count = min(left, buffer.count)
        buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0x61, count: count)
        remaining[stream] = left - count
        return (count, left == count)
    }

    func h2ResponseTrailers(stream: Int32) -> Bool {
        session.trailerField(name: UnsafeRawBufferPointer(start: Self.status.utf8Start, count: Self.status.utf8CodeUnitCount),
                             value: UnsafeRawBufferPointer(start: Self.ok.utf8Start, count: 1))
        return true
    }

    private static let status: StaticString = "grpc-status"
    private static let ok: StaticString = "0"
}
