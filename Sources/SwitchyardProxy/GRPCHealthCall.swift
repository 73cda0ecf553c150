import SwitchyardHTTP2

/// One health probe of a gRPC endpoint: Ray Serve's `ray.serve.RayServeAPIService/Healthz`
/// called over h2c, judged by its `grpc-status` (Ray's HAProxy mode answers HTTP 200 with
/// grpc-status 14). The session is driven by the prober's loop: `output` for the bytes to
/// write, `receive` for those read, `verdict` once the call is over.
final class GRPCHealthCall: H2ClientSessionDelegate {
    static let path = "/ray.serve.RayServeAPIService/Healthz"
    private let session: H2ClientSession
    private var status = 0
    private var grpcStatus: Int?
    private var grpcMessage = ""
    private var requestSent = false
    private(set) var verdict: ProbeResult?

    init(authority: String) throws(H2Error) {
        session = try H2ClientSession(maxHeaderListBytes: 16384)
        session.delegate = self
        Self.bytes("POST") { method in
            Self.bytes("http") { scheme in
                Self.bytes(authority) { authority in
                    Self.bytes(Self.path) { session.beginRequest(method: method, scheme: scheme, authority: authority, path: $0) }
                }
            }
        }
        for (name, value) in [("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "switchyard-health-check")] {
            Self.bytes(name) { name in Self.bytes(value) { session.requestField(name: name, value: $0) } }
        }
        _ = try session.submitRequest(hasBody: true)
    }

    private static func bytes(_ text: String, _ body: (UnsafeRawBufferPointer) -> Void) {
        Array(text.utf8).withUnsafeBytes(body)
    }

    /// What the session has for the endpoint (a probe's frames are a few hundred bytes); nil
    /// when the session failed.
    func output() -> [UInt8]? {
        var out: [UInt8] = []
        do {
            while let bytes = try session.send() { out += bytes }
        } catch {
            return nil
        }
        return out
    }

    /// Takes the endpoint's bytes; why not, when they broke the protocol.
    func receive(_ bytes: UnsafeRawBufferPointer) -> String? {
        do {
            try session.receive(bytes)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The verdict from what came back (pure: the rules, apart from the session).
    static func evaluate(status: Int, grpcStatus: Int?, message: String, resetCode: UInt32) -> ProbeResult {
        if status == 0 { return .failed("reset the Healthz call (HTTP/2 error code \(resetCode))") }
        guard status == 200 else { return .failed("answered HTTP \(status) to Healthz instead of 200") }
        guard let grpcStatus else {
            return .failed(resetCode == 0 ? "answered Healthz without grpc-status" : "reset the Healthz call (HTTP/2 error code \(resetCode))")
        }
        if grpcStatus == 0 { return .healthy }
        if grpcStatus == 14 && message.contains("drain") { return .draining }
        return .failed("answered Healthz with grpc-status \(grpcStatus)\(message.isEmpty ? "" : " (\(message))")")
    }

    private func read(_ fields: H2FieldsView) {
        if let value = fields.field("grpc-status") { grpcStatus = GRPC.statusCode(value) }
        if let value = fields.field("grpc-message") { grpcMessage = String(decoding: value.prefix(200), as: UTF8.self) }
    }

    func h2Response(stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool) {
        self.status = status
        if endStream { read(fields) }
    }

    func h2ResponseData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        session.consume(stream: stream, bytes: bytes.count)
    }

    func h2ResponseEnd(stream: Int32, trailers: H2FieldsView?) {
        if let trailers { read(trailers) }
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        verdict = Self.evaluate(status: status, grpcStatus: grpcStatus, message: grpcMessage, resetCode: errorCode)
    }

    /// The request: one empty message (`HealthzRequest` has no fields).
    func h2RequestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard !requestSent else { return (0, true) }
        requestSent = true
        for index in 0..<5 { buffer[index] = 0 }
        return (5, true)
    }
}
