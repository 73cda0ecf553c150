import Glibc
import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting

/// One blocking HTTP/1.1 request, for the command line (the admin API, Ray's dashboard);
/// never used by the proxy's event loops.
public enum HTTPClient {
    public struct Response: Sendable {
        public let status: Int
        public let body: [UInt8]

        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Most bytes of an answer read.
    static let maxResponseBytes = 64 << 20

    /// Sends `method path` with `body` (JSON) and reads the whole answer; `timeoutMs` bounds
    /// the connect and each wait for bytes.
    public static func send(
        _ method: String, _ path: String, to endpoint: Endpoint, headers: [(String, String)] = [], body: [UInt8]? = nil,
        timeoutMs: Int32 = 5000
    ) throws(Failure) -> Response {
        let address: SocketAddress
        do {
            guard let first = try SocketAddress.resolve(host: endpoint.host, port: endpoint.port).first else {
                throw Failure(description: "\(endpoint) does not resolve")
            }
            address = first
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(description: "\(endpoint) does not resolve (\(error))")
        }
        let fd = try connect(address, timeoutMs: timeoutMs)
        defer { Syscall.close(fd) }
        Socket.setBlocking(fd)
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\nAccept: application/json\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let bytes = Array((request + "\r\n").utf8) + (body ?? [])
        let sent = bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try FileIO.writeAll(fd, buffer) } }
        if case .failure(let error) = sent { throw Failure(description: "cannot send to \(endpoint) (\(error))") }
        return try readResponse(fd, from: endpoint, timeoutMs: timeoutMs, requestWasHead: method == "HEAD")
    }

    private static func connect(_ address: SocketAddress, timeoutMs: Int32) throws(Failure) -> Int32 {
        do {
            let (fd, progress) = try Socket.connect(to: address)
            if progress == .inProgress {
                var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = Glibc.poll(&poll, 1, timeoutMs)
                let error = Socket.pendingError(fd)
                guard ready == 1, error == 0 else {
                    Syscall.close(fd)
                    throw SystemError("connect", errno: ready == 1 ? error : ETIMEDOUT)
                }
            }
            return fd
        } catch {
            throw Failure(description: "cannot connect to \(address) (\(error))")
        }
    }

    private static func readResponse(_ fd: Int32, from endpoint: Endpoint, timeoutMs: Int32, requestWasHead: Bool) throws(Failure) -> Response {
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            guard Glibc.poll(&poll, 1, timeoutMs) == 1 else {
                throw Failure(description: "\(endpoint) sent no complete answer within \(timeoutMs) ms")
            }
            let read: Result<IOResult, SystemError> = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemError) in try Syscall.read(fd, bytes.baseAddress!, bytes.count) }
            }
            guard case .success(.processed(let count)) = read, count > 0 else { break }
            response += chunk[0..<count]
            guard response.count <= maxResponseBytes else { throw Failure(description: "\(endpoint) answered more than 64 MiB") }
        }
        var parser = HeadParser(limits: HeadLimits(maxHeadBytes: 65536, maxHeaders: 100, maxURIBytes: 8192))
        var head = ResponseHead()
        guard case .complete(let length) = response.withUnsafeBytes({ parser.parseResponse($0, requestWasHead: requestWasHead, into: &head) }) else {
            throw Failure(description: "\(endpoint) sent no valid HTTP answer")
        }
        var body = Array(response[length...])
        var framer = BodyFramer(head.framing == .untilClose ? .untilClose : head.framing, keepTrailers: false)
        var decoded: [UInt8] = []
        let step = body.withUnsafeMutableBytes { framer.decode($0) }
        guard case .decoded(let result) = step else { throw Failure(description: "\(endpoint) sent a malformed body") }
        decoded += body[result.skipped..<(result.skipped + result.data)]
        // A chunked body decodes in several steps: the framer stops at each chunk's end.
        var offset = result.consumed
        while !framer.isComplete && offset < body.count {
            let step = body[offset...].withUnsafeMutableBytes { framer.decode($0) }
            guard case .decoded(let next) = step, next.consumed > 0 else { throw Failure(description: "\(endpoint) sent a malformed body") }
            decoded += body[(offset + next.skipped)..<(offset + next.skipped + next.data)]
            offset += next.consumed
        }
        if head.framing != .untilClose && !framer.isComplete { throw Failure(description: "\(endpoint) closed before its answer was complete") }
        body = decoded
        return Response(status: head.status, body: body)
    }
}
