/// libFuzzer target: the client side of an HTTP/2 connection (to a backend) fed arbitrary
/// bytes as the backend's, in chunks of the size the first byte says, after the session sent
/// its preface and three requests (one with a body). The connection reads every response field
/// and consumes every body byte, as the proxy will.
///
/// It must never trap; a fatal protocol error ends the input, as it ends the connection.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzH2Client(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let step = Int(bytes[0]) * 16 + 1
    guard let session = try? H2ClientSession(allocator: fuzzAllocator) else { return 0 }
    let connection = CallingConnection(session)
    for (index, path) in ["/a", "/svc/Method", "/c"].enumerated() {
        connection.call(path: path, body: index == 1 ? Array(repeating: 0x62, count: 300) : nil)
    }
    while (try? session.send()) != nil {}
    feed(session, UnsafeRawBufferPointer(start: bytes + 1, count: size - 1), step: step)
    return 0
}

final class CallingConnection: H2ClientSessionDelegate {
    let session: H2ClientSession
    var uploads: [Int32: Int] = [:]

    init(_ session: H2ClientSession) {
        self.session = session
        session.delegate = self
    }

    func call(path: String, body: [UInt8]?) {
        let text = ["POST", "http", "backend", path].map { Array($0.utf8) }
        text[0].withUnsafeBytes { m in text[1].withUnsafeBytes { s in text[2].withUnsafeBytes { a in text[3].withUnsafeBytes { p in
            session.beginRequest(method: m, scheme: s, authority: a, path: p)
        } } } }
        guard let stream = try? session.submitRequest(hasBody: body != nil) else { return }
        if let body { uploads[stream] = body.count }
    }

    func h2Response(stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool) {
        precondition(status >= 200, "interim heads are not reported")
        for index in 0..<fields.count where fields.name(at: index).isEmpty && fields.value(at: index).count > 1 << 20 {
            preconditionFailure("a field beyond any head")
        }
    }

    func h2ResponseData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        session.consume(stream: stream, bytes: bytes.count)
    }

    func h2ResponseEnd(stream: Int32, trailers: H2FieldsView?) {
        _ = trailers?.field("grpc-status")
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        uploads[stream] = nil
    }

    func h2RequestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard let left = uploads[stream] else { return (0, true) }
        let count = min(left, buffer.count)
        buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0x62, count: count)
        uploads[stream] = left - count
        return (count, left == count)
    }
}
