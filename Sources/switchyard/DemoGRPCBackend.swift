import CLinuxShims
import Glibc
import SwitchyardHTTP2
import SwitchyardIO

/// The demo backend's gRPC side, standing in for a Ray Serve gRPC proxy: HTTP/2 without TLS,
/// blocking, one thread per connection. Every call is answered the same way, whatever its
/// method: each request message is echoed back as it arrives (unary, streaming and bidi calls
/// all work), the initial metadata says `served-by: <name>`, and the call ends with
/// `grpc-status: 0` once the client ended its side. Ray's
/// `/ray.serve.RayServeAPIService/Healthz` is a unary call like any other here.
struct DemoGRPCBackend {
    let name: String
    let listener: Int32

    func run() {
        let name = self.name
        while true {
            guard let accepted = try? Syscall.accept(listener) else { continue }
            Socket.setBlocking(accepted.fd)
            Socket.setNoDelay(accepted.fd)
            try? ThreadStarter.start(name: "demo-grpc") {
                guard let connection = try? DemoGRPCConnection(fd: accepted.fd, name: name) else { return Syscall.close(accepted.fd) }
                connection.serve()
            }
        }
    }
}

final class DemoGRPCConnection: H2ServerSessionDelegate {
    let fd: Int32
    let session: H2ServerSession
    private let fields: [H2Field]
    /// Per open call: request bytes not yet echoed, and whether the client ended its side.
    private var calls: [Int32: (pending: [UInt8], ended: Bool)] = [:]

    init(fd: Int32, name: String) throws {
        self.fd = fd
        var limits = H2Limits()
        limits.maxConcurrentStreams = 1000
        limits.streamWindowBytes = 1 << 20
        session = try H2ServerSession(limits: limits)
        fields = [H2Field("content-type", "application/grpc"), H2Field("served-by", name)]
        session.delegate = self
    }

    func serve() {
        defer { Syscall.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                while let bytes = try session.send() {
                    guard DemoConnection.sendAll(fd, bytes) else { return }
                }
            } catch {
                return
            }
            guard session.wantsRead || session.wantsWrite else { return }
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && sy_errno() == EINTR { continue }
            guard count > 0 else { return }
            guard (try? buffer.withUnsafeBytes({ try session.receive(UnsafeRawBufferPointer(rebasing: $0[0..<count])) })) != nil else {
                _ = try? session.send().map { DemoConnection.sendAll(fd, $0) }
                return
            }
        }
    }

    func h2Request(stream: Int32, head: H2RequestView, endStream: Bool) {
        calls[stream] = ([], endStream)
        try? session.respond(stream: stream, status: 200, fields: fields, hasBody: true)
    }

    /// Request bytes wait until echoed: the window opens only then, so a client that sends
    /// without reading holds at most its window here.
    func h2RequestData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        calls[stream]?.pending.append(contentsOf: bytes)
        session.resume(stream: stream)
    }

    func h2RequestEnd(stream: Int32, trailers: [H2Field]) {
        calls[stream]?.ended = true
        session.resume(stream: stream)
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        if let call = calls.removeValue(forKey: stream), !call.pending.isEmpty { session.consumeConnection(bytes: call.pending.count) }
    }

    func h2ResponseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard var call = calls[stream] else { return (0, true) }
        let count = min(buffer.count, call.pending.count)
        call.pending.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        call.pending.removeFirst(count)
        calls[stream] = call
        session.consume(stream: stream, bytes: count)
        if call.ended && call.pending.isEmpty { return (count, true) }
        return count > 0 ? (count, false) : nil
    }

    func h2ResponseTrailers(stream: Int32) -> Bool {
        Self.status.withUnsafeBytes { name in Self.ok.withUnsafeBytes { session.trailerField(name: name, value: $0) } }
        return true
    }

    private static let status = Array("grpc-status".utf8)
    private static let ok = Array("0".utf8)
}
