import CNGHTTP2
import SwitchyardHTTP2

/// An HTTP/2 client made with nghttp2's own client session (the real library, not a script),
/// wired to an `H2ServerSession` in memory.
final class H2TestClient {
    struct Response {
        var status = 0
        var fields: [H2Field] = []
        var body: [UInt8] = []
        var trailers: [H2Field] = []
        var ended = false
        /// Set when the stream closed; 0 after a complete response.
        var closeCode: UInt32?
        var sawHeaders = false
    }

    private var session: OpaquePointer?
    var responses: [Int32: Response] = [:]
    /// The error code of a GOAWAY from the server.
    var goAwayCode: UInt32?
    /// Request bodies still to send, per stream.
    private var uploads: [Int32: (bytes: [UInt8], sent: Int, trailers: [(String, String)])] = [:]

    init() {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrame)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnData)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnClose)
        nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
        nghttp2_submit_settings(session, 0, nil, 0)
    }

    deinit { nghttp2_session_del(session) }

    /// Queues a request; returns its stream id. `trailers` follow the body.
    @discardableResult
    func request(method: String = "GET", path: String = "/", authority: String = "proxy.test",
                 fields: [(String, String)] = [], body: [UInt8]? = nil, trailers: [(String, String)] = []) -> Int32 {
        let all = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + fields
        let stream: Int32 = withNameValues(all) { list, count in
            if body != nil {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: clientReadBody)
                return nghttp2_submit_request(session, nil, list, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, list, count, nil, nil)
        }
        precondition(stream > 0, "nghttp2 refused the request: \(stream)")
        if let body { uploads[stream] = (body, 0, trailers) }
        return stream
    }

    /// Calls `body` with `pairs` as nghttp2 name/value pairs (nghttp2 copies them during the call).
    private func withNameValues(_ pairs: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32) -> Int32 {
        var bytes = pairs.flatMap { Array($0.0.utf8) + Array($0.1.utf8) }
        return bytes.withUnsafeMutableBufferPointer { storage in
            var offset = 0
            let list = pairs.map { name, value in
                let namePointer = storage.baseAddress! + offset
                offset += name.utf8.count + value.utf8.count
                return nghttp2_nv(name: namePointer, value: namePointer + name.utf8.count, namelen: name.utf8.count,
                                  valuelen: value.utf8.count, flags: 0)
            }
            return list.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }

    func reset(stream: Int32) {
        nghttp2_submit_rst_stream(session, 0, stream, UInt32(NGHTTP2_CANCEL.rawValue))
    }

    /// Moves bytes both ways until neither side has any to send. Returns the server's error
    /// if it ended the connection.
    @discardableResult
    func exchange(with server: H2ServerSession) -> H2Error? {
        var serverError: H2Error?
        for _ in 0..<10_000 {
            var moved = false
            var pointer: UnsafePointer<UInt8>?
            while true {
                let count = nghttp2_session_mem_send(session, &pointer)
                guard count > 0, let pointer else { break }
                moved = true
                if serverError == nil {
                    do { try server.receive(UnsafeRawBufferPointer(start: pointer, count: count)) } catch { serverError = error }
                }
            }
            while let bytes = try? server.send() {
                moved = true
                _ = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
            }
            if !moved { break }
        }
        return serverError
    }

    /// Sends raw bytes to the server (for malformed input).
    func raw(_ bytes: [UInt8], to server: H2ServerSession) -> H2Error? {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(H2Error) in try server.receive(buffer) } }
        if case .failure(let error) = result { return error }
        return nil
    }

    fileprivate func header(stream: Int32, category: nghttp2_headers_category, name: [UInt8], value: [UInt8]) {
        var response = responses[stream] ?? Response()
        if name == Array(":status".utf8) {
            response.status = Int(String(decoding: value, as: UTF8.self)) ?? 0
        } else if response.sawHeaders {
            response.trailers.append(H2Field(name: name, value: value))
        } else {
            response.fields.append(H2Field(name: name, value: value))
        }
        responses[stream] = response
    }

    fileprivate func frame(_ frame: UnsafePointer<nghttp2_frame>) {
        let header = frame.pointee.hd
        if header.type == UInt8(NGHTTP2_GOAWAY.rawValue) { goAwayCode = frame.pointee.goaway.error_code }
        guard header.stream_id > 0 else { return }
        var response = responses[header.stream_id] ?? Response()
        if header.type == UInt8(NGHTTP2_HEADERS.rawValue) { response.sawHeaders = true }
        if header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 { response.ended = true }
        responses[header.stream_id] = response
    }

    fileprivate func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        responses[stream, default: Response()].body += bytes
    }

    fileprivate func closed(stream: Int32, code: UInt32) {
        responses[stream, default: Response()].closeCode = code
    }

    fileprivate func readBody(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard var upload = uploads[stream] else { return 0 }
        let count = min(buffer.count, upload.bytes.count - upload.sent)
        upload.bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + upload.sent, byteCount: count) }
        upload.sent += count
        uploads[stream] = upload
        if upload.sent == upload.bytes.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if !upload.trailers.isEmpty {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                _ = withNameValues(upload.trailers) { list, count in nghttp2_submit_trailer(session, stream, list, count) }
            }
        }
        return count
    }
}

private func client(_ data: UnsafeMutableRawPointer?) -> H2TestClient {
    Unmanaged<H2TestClient>.fromOpaque(data!).takeUnretainedValue()
}

private let clientOnHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, data in
    guard let frame else { return 0 }
    client(data).header(stream: frame.pointee.hd.stream_id, category: frame.pointee.headers.cat,
                        name: Array(UnsafeRawBufferPointer(start: name, count: nameLength)),
                        value: Array(UnsafeRawBufferPointer(start: value, count: valueLength)))
    return 0
}

private let clientOnFrame: nghttp2_on_frame_recv_callback = { _, frame, data in
    if let frame { client(data).frame(frame) }
    return 0
}

private let clientOnData: nghttp2_on_data_chunk_recv_callback = { _, _, stream, bytes, count, data in
    client(data).data(stream: stream, bytes: UnsafeRawBufferPointer(start: bytes, count: count))
    return 0
}

private let clientOnClose: nghttp2_on_stream_close_callback = { _, stream, code, data in
    client(data).closed(stream: stream, code: code)
    return 0
}

private let clientReadBody: nghttp2_data_source_read_callback = { _, stream, buffer, length, flags, _, data in
    client(data).readBody(stream: stream, into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags!)
}
