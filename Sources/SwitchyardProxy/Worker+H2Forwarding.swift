import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO

/// HTTP/2 streams to HTTP/1.1 backends and back (RFC 9113 §8.2.2, §8.3.1): `:authority`
/// becomes Host, cookies are joined, a body of unknown length goes chunked; the response's
/// connection-specific fields stay behind and its names are lowercased.
extension Worker {
    /// Authenticates and routes a stream's request, then starts relaying it.
    func startStreamExchange(_ s: H2Stream, _ x: Exchange, _ head: H2RequestHead, endStream: Bool) {
        let method = head.method.withUnsafeBytes { RequestMethod.classify($0) }
        let requestID = head.field("x-request-id")
        x.requestWasHead = method == .head
        x.acceptsTrailers = true
        x.responseOutput = .data
        if let log = accessLog {
            head.method.withUnsafeBytes { method in
                head.path.withUnsafeBytes { path in
                    requestID.withUnsafeBytesIfPresent { id in
                        x.summary.capture(method: method, target: path, requestID: id, query: log.capturesQuery)
                    }
                }
            }
            x.summary.httpVersion = 20
        }
        if method == .connect {
            return perform(x, x.machine.reject(.methodNotAllowed), message: "CONNECT is not supported by this proxy")
        }
        let failure = head.field("authorization").withUnsafeBytesIfPresent { authorization in
            head.field("x-anyscale-version").withUnsafeBytesIfPresent { pinned in
                route(x, authorization: authorization, pinned: pinned)
            }
        }
        if let (error, message) = failure { return perform(x, x.machine.reject(error), message: message) }
        if requestID == nil {
            x.requestID = RequestID(high: nextRandom(), low: nextRandom())
            x.generatedRequestID = true
        }
        let contentLength = head.field("content-length").flatMap { Int(String(decoding: $0, as: UTF8.self)) }
        if endStream {
            x.requestBody = BodyRelay(.none)
        } else if let contentLength {
            x.requestBody = BodyRelay(.contentLength(contentLength))
        } else {
            s.chunkedUpload = true
            x.requestBody = BodyRelay(.untilClose, output: .chunked)
        }
        x.resendAllowed = endStream && method.isIdempotent
        writeForwardedRequestHead(s, x, head, contentLength: endStream ? nil : contentLength, into: x.forwardedHead)
        x.machine.routed()
        guard let u = connectUpstream(x) ?? connectOtherVersion(x) else {
            x.forwardedHead.clear()
            return perform(x, x.machine.noEndpointLeft())
        }
        if x.machine.mayResend { x.resendHead.append(x.forwardedHead.readableBytes) }
        perform(x, flushToUpstream(x, u))
    }

    /// The HTTP/1.1 request head for the backend, with the same forwarding fields as for an
    /// HTTP/1.1 client (`writeForwardedRequestHead(_:_:head:into:)`).
    private func writeForwardedRequestHead(_ s: H2Stream, _ x: Exchange, _ head: H2RequestHead, contentLength: Int?, into out: ByteBuffer) {
        let upstreamAuthorization = x.routes?.authorizationLines[x.versionIndex]
        let host = head.authority.isEmpty ? (head.field("host") ?? []) : head.authority
        out.append(head.method)
        out.append(" " as StaticString)
        out.append(head.path)
        out.append(" HTTP/1.1\r\nHost: " as StaticString)
        out.append(host)
        out.append("\r\n" as StaticString)
        var cookies = 0
        for field in head.fields {
            let kind = field.name.withUnsafeBytes { KnownHeader.classify($0) }
            switch kind {
            case .host, .contentLength, .transferEncoding, .connection, .keepAlive, .proxyConnection, .te, .upgrade,
                 .proxyAuthorization, .forwardedFor, .forwardedProto, .forwardedHost:
                continue
            case .authorization:
                if !settings.forwardAuthorization || upstreamAuthorization != nil { continue }
            default:
                if field.name.elementsEqual(Self.cookie) {
                    cookies += 1
                    continue
                }
            }
            out.append(field.name)
            out.append(": " as StaticString)
            out.append(field.value)
            out.append("\r\n" as StaticString)
        }
        if cookies > 0 {
            // RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1 with "; ".
            out.append("cookie: " as StaticString)
            var first = true
            for field in head.fields where field.name.elementsEqual(Self.cookie) {
                if !first { out.append("; " as StaticString) }
                out.append(field.value)
                first = false
            }
            out.append("\r\n" as StaticString)
        }
        if let contentLength {
            out.append("Content-Length: " as StaticString)
            out.append(decimal: contentLength)
            out.append("\r\n" as StaticString)
        } else if s.chunkedUpload {
            out.append("Transfer-Encoding: chunked\r\n" as StaticString)
        }
        if let upstreamAuthorization { out.append(upstreamAuthorization) }
        out.append("X-Forwarded-For: " as StaticString)
        for field in head.fields where field.name.withUnsafeBytes({ KnownHeader.classify($0) }) == .forwardedFor && !field.value.isEmpty {
            out.append(field.value)
            out.append(", " as StaticString)
        }
        host.withUnsafeBytes { host in
            writeForwardedTail(x, client: s.connection.clientAddress, tls: s.connection.transport.isTLS, host: host, into: out)
        }
    }

    private static let cookie = Array("cookie".utf8)

    /// Submits the backend's response head on the stream: status, end-to-end fields with
    /// lowercase names, the version that served it.
    func writeResponseHead(_ s: H2Stream, _ x: Exchange, _ u: UpstreamConnection, headLength: Int) {
        let head = UnsafeRawBufferPointer(rebasing: u.input.readableBytes[0..<headLength])
        let response = u.machine.response
        var fields: [H2Field] = []
        fields.reserveCapacity(response.fields.count + 2)
        var sawRequestID = false
        for field in response.fields {
            switch field.kind {
            case .connection, .keepAlive, .proxyConnection, .te, .proxyAuthorization, .anyscaleVersion, .transferEncoding, .upgrade:
                continue
            case .requestID:
                sawRequestID = true
            case .other:
                if response.hasConnectionOptions && Self.isNamedByConnection(field, fields: response.fields, head: head) { continue }
            default:
                break
            }
            fields.append(H2Field(name: field.name.bytes(in: head).map(ASCII.lower), value: Array(field.value.bytes(in: head))))
        }
        if let routes = x.routes { fields.append(H2Field(name: Self.versionField, value: routes.versionNames[x.versionIndex])) }
        if x.generatedRequestID && !sawRequestID { fields.append(H2Field(name: Self.requestIDField, value: x.requestID.hex)) }
        s.responding = true
        s.bodiless = response.framing == .none
        do {
            try s.connection.session.respond(stream: s.id, status: response.status, fields: fields, hasBody: !s.bodiless)
        } catch {
            resetStream(s)
        }
    }

    private static let versionField = Array("x-anyscale-version".utf8)
    private static let requestIDField = Array("x-request-id".utf8)

    /// Request trailer fields that may go on to an HTTP/1.1 backend (RFC 9110 §6.5.1: none
    /// that frames, routes or authenticates).
    static func mayForwardTrailer(_ field: H2Field) -> Bool {
        switch field.name.withUnsafeBytes({ KnownHeader.classify($0) }) {
        case .other, .requestID: return true
        default: return false
        }
    }

    /// A validated HTTP/1.1 trailer section (`name: value` lines, then CRLF) as HTTP/2 fields.
    static func trailerFields(_ section: UnsafeRawBufferPointer) -> [H2Field] {
        var fields: [H2Field] = []
        var start = 0
        while let end = section[start...].firstIndex(of: ASCII.cr), end > start {
            let line = section[start..<end]
            start = end + 2
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[line.startIndex..<colon].map(ASCII.lower)
            var value = line[(colon + 1)...]
            while let first = value.first, first == ASCII.space || first == ASCII.tab { value = value.dropFirst() }
            while let last = value.last, last == ASCII.space || last == ASCII.tab { value = value.dropLast() }
            let field = H2Field(name: name, value: Array(value))
            if mayForwardTrailer(field) { fields.append(field) }
        }
        return fields
    }
}

extension Optional where Wrapped == [UInt8] {
    /// Calls `body` with the bytes, or with nil when there are none.
    func withUnsafeBytesIfPresent<Result>(_ body: (UnsafeRawBufferPointer?) -> Result) -> Result {
        switch self {
        case .some(let bytes): bytes.withUnsafeBytes { body($0) }
        case .none: body(nil)
        }
    }
}
