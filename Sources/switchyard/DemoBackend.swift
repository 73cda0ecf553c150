import CLinuxShims
import Glibc
import SwitchyardHTTP
import ArgumentParser
import SwitchyardIO

/// A blocking, thread-per-connection HTTP/1.1 server: simple to read, good enough for demos
/// and tests, and deliberately not the proxy's event-loop code, so tests exercise the proxy
/// against an independent implementation.
struct DemoBackend {
    let name: String
    let address: SocketAddress

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let listener: Int32
        do {
            listener = try Socket.listen(on: address, reusePort: false)
        } catch {
            throw ValidationError("cannot listen on \(address): \(error)")
        }
        Socket.setBlocking(listener)
        let bound = Socket.localAddress(listener)?.description ?? address.description
        print("demo-backend \(name) listening on \(bound)")
        fflush(nil)
        let name = self.name
        while true {
            guard let accepted = try Syscall.accept(listener) else { continue }
            Socket.setBlocking(accepted.fd)
            Socket.setNoDelay(accepted.fd)
            try ThreadStarter.start(name: "demo-conn") {
                DemoConnection(fd: accepted.fd, name: name).serve()
            }
        }
    }
}

final class DemoConnection {
    let fd: Int32
    let name: String
    let input = ByteBuffer(capacity: 16384)
    var parser = HeadParser(limits: HeadLimits())
    var head = RequestHead()

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    func serve() {
        defer { Syscall.close(fd) }
        while true {
            guard let headLength = readHead() else { return }
            let bytes = input.readableBytes
            let request = DemoRequest(head: head, bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<headLength]))
            input.consume(headLength)
            guard let body = readBody(head.framing) else { return }
            if head.upgrade, request.header("upgrade")?.lowercased() == "websocket" {
                WebSocketEcho(fd: fd, input: input).run(request: request)
                return
            }
            guard respond(request, bodyBytes: body) else { return }
            if !head.keepAlive { return }
        }
    }

    /// Reads until a complete request head is buffered; nil on close or a bad request.
    private func readHead() -> Int? {
        while true {
            input.consume(HeadParser.leadingEmptyLines(input.readableBytes))
            if !input.isEmpty {
                switch parser.parseRequest(input.readableBytes, into: &head) {
                case .complete(let length):
                    parser.reset()
                    return length
                case .error(let error):
                    send("HTTP/1.1 \(error.status) Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return nil
                case .needMore:
                    break
                }
            }
            guard readMore() else { return nil }
        }
    }

    private func readMore() -> Bool {
        input.reserveWritable(8192)
        guard case .processed(let count)? = try? input.read(from: fd), count > 0 else { return false }
        return true
    }

    /// Reads and counts the request body (keeping at most the first 64 KiB).
    private func readBody(_ framing: BodyFraming) -> Int? {
        var framer = BodyFramer(framing)
        var total = 0
        while !framer.isComplete {
            if input.isEmpty, !readMore() { return nil }
            let step = framer.decode(input.mutableReadableBytes(from: 0))
            switch step {
            case .decoded(let decoded):
                total += decoded.data
                input.consume(decoded.consumed)
            case .error:
                return nil
            }
        }
        return total
    }

    private func respond(_ request: DemoRequest, bodyBytes: Int) -> Bool {
        let path = request.path
        if let delay = request.query("delay_ms").flatMap(Int.init), delay > 0 {
            usleep(UInt32(min(delay, 600_000)) * 1000)
        }
        if path == "/-/healthz" {
            return send(response(status: 200, type: "text/plain", body: "success"))
        }
        if path == "/stream" {
            return stream(chunks: request.query("chunks").flatMap(Int.init) ?? 5,
                          intervalMs: request.query("interval_ms").flatMap(Int.init) ?? 100)
        }
        if path == "/bytes" {
            let count = min(request.query("n").flatMap(Int.init) ?? 16384, 64 << 20)
            return send(response(status: 200, type: "application/octet-stream", body: String(repeating: "x", count: count)))
        }
        var status = 200
        if path.hasPrefix("/status/"), let code = Int(path.dropFirst(8)), (200...599).contains(code) { status = code }
        let headers = request.headers.map { "\(quote($0.name)):\(quote($0.value))" }.joined(separator: ",")
        let body = "{\"version\":\(quote(name)),\"method\":\(quote(request.method)),\"path\":\(quote(request.target)),"
            + "\"headers\":{\(headers)},\"body_bytes\":\(bodyBytes)}\n"
        return send(response(status: status, type: "application/json", body: request.method == "HEAD" ? nil : body, length: body.utf8.count))
    }

    private func response(status: Int, type: String, body: String?, length: Int? = nil) -> String {
        let count = length ?? body?.utf8.count ?? 0
        let connection = head.keepAlive ? "" : "Connection: close\r\n"
        return "HTTP/1.1 \(status) \(status == 200 ? "OK" : "Status")\r\nContent-Type: \(type)\r\nContent-Length: \(count)\r\n"
            + "X-Served-By: \(name)\r\n\(connection)\r\n\(body ?? "")"
    }

    /// Server-sent events, one chunk each, `intervalMs` apart, like a token stream.
    private func stream(chunks: Int, intervalMs: Int) -> Bool {
        let connection = head.keepAlive ? "" : "Connection: close\r\n"
        guard send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   + "Transfer-Encoding: chunked\r\n\(connection)\r\n") else { return false }
        for index in 0..<max(0, min(chunks, 100_000)) {
            if index > 0 { usleep(UInt32(max(0, min(intervalMs, 60_000))) * 1000) }
            let event = "data: {\"version\":\(quote(name)),\"chunk\":\(index)}\n\n"
            guard send("\(String(event.utf8.count, radix: 16))\r\n\(event)\r\n") else { return false }
        }
        return send("0\r\n\r\n")
    }

    @discardableResult
    func send(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { DemoConnection.sendAll(fd, $0) }
    }

    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            // Safe because `offset < bytes.count` means the buffer is not empty.
            let sent = Glibc.send(fd, bytes.baseAddress.unsafelyUnwrapped + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent <= 0 {
                if sent < 0 && sy_errno() == EINTR { continue }
                return false
            }
            offset += sent
        }
        return true
    }

    private func quote(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            default:
                if scalar.value < 0x20 { result += "\\u00" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16) } else { result.unicodeScalars.append(scalar) }
            }
        }
        return result + "\""
    }
}

/// A parsed request as strings (the demo backend is not performance-sensitive).
struct DemoRequest {
    let method: String
    let target: String
    let headers: [(name: String, value: String)]

    init(head: RequestHead, bytes: UnsafeRawBufferPointer) {
        method = String(decoding: head.method.bytes(in: bytes), as: UTF8.self)
        target = String(decoding: head.target.bytes(in: bytes), as: UTF8.self)
        var headers: [(String, String)] = []
        for field in head.fields {
            let name = String(decoding: field.name.bytes(in: bytes), as: UTF8.self).lowercased()
            let value = String(decoding: field.value.bytes(in: bytes), as: UTF8.self)
            if let index = headers.firstIndex(where: { $0.0 == name }) {
                headers[index].1 += ", " + value
            } else {
                headers.append((name, value))
            }
        }
        self.headers = headers
    }

    var path: String { String(target.split(separator: "?", maxSplits: 1).first ?? "") }

    func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }

    func query(_ key: String) -> String? {
        guard let query = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first.map(String.init) == key { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}
