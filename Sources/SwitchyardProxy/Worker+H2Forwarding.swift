import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO

/// HTTP/2 streams to HTTP/1.1 backends and back (RFC 9113 §8.2.2, §8.3.1): `:authority`
/// becomes Host, cookies are joined, a body of unknown length goes chunked; the response's
/// connection-specific fields stay behind and its names are lowercased.
extension Worker {
    /// Authenticates and routes a stream's request, then starts relaying it. The head's bytes
    /// are valid during this call only: what is needed later is written or copied here.
    func startStreamExchange(_ s: H2Stream, _ x: Exchange, _ head: H2RequestView, endStream: Bool) {
        let method = RequestMethod.classify(head.method)
        let requestID = head.field(RequestIDField.name)
        x.requestWasHead = method == .head
        x.acceptsTrailers = true
        x.responseOutput = .data
        x.grpc = GRPC.isGRPC(contentType: head.field("content-type"))
        s.grpc = x.grpc
        if x.grpc, let timeout = head.field("grpc-timeout").flatMap(GRPC.timeoutMs) { x.deadline = now + max(timeout, 1) }
        if let log = accessLog {
            x.summary.capture(method: head.method, target: head.path, requestID: requestID, query: log.capturesQuery)
            x.summary.httpVersion = 20
        }
        if method == .connect {
            return perform(x, x.machine.reject(.methodNotAllowed), message: "CONNECT is not supported by this proxy")
        }
        if let (error, message) = checkLimits(head, method: method) { return perform(x, x.machine.reject(error), message: message) }
        let (authorization, pinned, problem) = Self.routingFields(head)
        if let problem { return perform(x, x.machine.reject(.malformedRequest), message: problem) }
        if let (error, message) = route(x, authorization: authorization, pinned: pinned) {
            return perform(x, x.machine.reject(error), message: message)
        }
        if requestID == nil {
            x.requestID = RequestID(high: nextRandom(), low: nextRandom())
            x.generatedRequestID = true
        }
        if x.grpc, let routes = x.routes {
            guard !routes.endpoints[x.versionIndex].grpc.isEmpty else {
                let name = routes.snapshot.versions[x.versionIndex].name
                return perform(x, x.machine.reject(.versionUnavailable), message: """
                    version "\(name)" takes no gRPC calls: it has no grpc_endpoints that resolve in the versions file
                    """)
            }
            return startCall(s, x, head)
        }
        // nghttp2 checked that a content-length is digits and that the DATA frames add up to it.
        let contentLength = head.field("content-length").map(Self.decimal)
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
        guard mayConnectStream(x) else { return waitForDescriptor(x) }
        connectStream(x)
    }

    /// Connects a stream's routed exchange (its head written) and sends what it has.
    func connectStream(_ x: Exchange) {
        guard let u = connectUpstream(x) ?? connectOtherVersion(x) else {
            x.forwardedHead.clear()
            return perform(x, x.machine.noEndpointLeft(outOfDescriptors: x.outOfDescriptors))
        }
        if x.machine.mayResend { x.resendHead.append(x.forwardedHead.readableBytes) }
        perform(x, flushToUpstream(x, u))
    }

    /// HTTP/1.1's rules for what becomes the backend's request line and head, whatever
    /// `:scheme` says (nghttp2 checks `:path` only for http and https): origin-form, or `*` for
    /// OPTIONS, in visible ASCII, within `limits.max_uri_bytes`; at most `limits.max_headers`
    /// fields.
    private func checkLimits(_ head: H2RequestView, method: RequestMethod) -> (ProxyError, String)? {
        let path = head.path
        if path.count > settings.headLimits.maxURIBytes {
            return (.uriTooLong, ":path is longer than limits.max_uri_bytes (\(settings.headLimits.maxURIBytes))")
        }
        guard path.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              path.first == UInt8(ascii: "/") || (path.count == 1 && path[0] == UInt8(ascii: "*") && method == .options)
        else {
            return (.malformedRequest, ":path must be a path starting with / in visible ASCII (or * for OPTIONS)")
        }
        if head.fieldCount > settings.headLimits.maxHeaders {
            return (.tooManyHeaders, "the request has more than limits.max_headers (\(settings.headLimits.maxHeaders)) fields")
        }
        return nil
    }

    /// The fields that route, by HTTP/1.1's rules: one Authorization; the pinned version given
    /// once (or repeated with the same value), an empty one meaning none.
    private static func routingFields(_ head: H2RequestView)
        -> (authorization: UnsafeRawBufferPointer?, pinned: UnsafeRawBufferPointer?, problem: String?)
    {
        var authorization: UnsafeRawBufferPointer?
        var pinned: UnsafeRawBufferPointer?
        for index in 0..<head.fieldCount {
            let value = head.value(at: index)
            switch KnownHeader.classify(head.name(at: index)) {
            case .authorization:
                if authorization != nil { return (nil, nil, "more than one authorization field") }
                authorization = value
            case .anyscaleVersion where !value.isEmpty:
                if let previous = pinned, !previous.elementsEqual(value) {
                    return (nil, nil, String(describing: VersionField.givenTwice))
                }
                pinned = value
            default:
                break
            }
        }
        return (authorization, pinned, nil)
    }

    private static func decimal(_ digits: UnsafeRawBufferPointer) -> Int {
        var value = 0
        for digit in digits { value = value &* 10 &+ Int(digit &- UInt8(ascii: "0")) }
        return value
    }

    /// The HTTP/1.1 request head for the backend, with the same forwarding fields as for an
    /// HTTP/1.1 client (`writeForwardedRequestHead(_:_:head:into:)`).
    private func writeForwardedRequestHead(_ s: H2Stream, _ x: Exchange, _ head: H2RequestView, contentLength: Int?, into out: ByteBuffer) {
        let upstreamAuthorization = x.routes?.authorizationLines[x.versionIndex]
        let host = head.authority.isEmpty ? (head.field("host") ?? head.authority) : head.authority
        out.append(head.method)
        out.append(" " as StaticString)
        out.append(head.path)
        out.append(" HTTP/1.1\r\nHost: " as StaticString)
        out.append(host)
        out.append("\r\n" as StaticString)
        var cookies = 0
        var forwardedFor = 0
        for index in 0..<head.fieldCount {
            let name = head.name(at: index)
            switch HeaderRewrite.request(KnownHeader.classify(name), toHTTP2: false) {
            case .drop, .framing:
                // Host comes from :authority; the body's framing is the stream's.
                continue
            case .hop:
                forwardedFor += 1
                continue
            case .authorization:
                if !settings.forwardAuthorization || upstreamAuthorization != nil { continue }
            case .copy:
                if ASCII.equalsExact(name, "cookie") {
                    cookies += 1
                    continue
                }
            }
            out.append(name)
            out.append(": " as StaticString)
            out.append(head.value(at: index))
            out.append("\r\n" as StaticString)
        }
        if cookies > 0 {
            // RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1 with "; ".
            out.append("cookie: " as StaticString)
            var first = true
            for index in 0..<head.fieldCount where ASCII.equalsExact(head.name(at: index), "cookie") {
                if !first { out.append("; " as StaticString) }
                out.append(head.value(at: index))
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
        HeaderRewrite.writeForwarding(
            into: out, .http1, priorHops: { hop in Self.forEachForwardedFor(head, count: forwardedFor, hop) },
            client: s.connection.clientAddress, tls: s.connection.transport.isTLS, host: host,
            requestID: x.generatedRequestID ? x.requestID : nil)
        out.append("\r\n" as StaticString)
    }

    /// Calls `body` with each `x-forwarded-for` value of an HTTP/2 request head, in order
    /// (`count` of them were seen; none are looked for when it is 0).
    static func forEachForwardedFor(_ head: H2RequestView, count: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard count > 0 else { return }
        for index in 0..<head.fieldCount where KnownHeader.classify(head.name(at: index)) == .forwardedFor {
            body(head.value(at: index))
        }
    }

    /// Queues the backend's response head for the stream: status, end-to-end fields, the
    /// version that served it. It goes to the session when the connection next writes
    /// (`submitPendingHeads`): until then a failure can still answer 502 in its place, as for an
    /// HTTP/1.1 client whose head has not left.
    func writeResponseHead(_ s: H2Stream, _ x: Exchange, _ u: UpstreamConnection, headLength: Int) {
        let head = UnsafeRawBufferPointer(rebasing: u.input.readableBytes[0..<headLength])
        let response = u.machine.response
        let fields = s.connection.pendingHeadFields
        let start = fields.readableCount
        var sawRequestID = false
        for field in response.fields {
            guard HeaderRewrite.response(field.kind, toHTTP2: true) == .copy else { continue }
            if field.kind == .requestID { sawRequestID = true }
            if response.hasConnectionOptions && field.kind == .other
                && HeaderRewrite.isNamedByConnection(field, fields: response.fields, head: head) { continue }
            PackedFields.append(name: field.name.bytes(in: head), value: field.value.bytes(in: head), to: fields)
        }
        if let routes = x.routes {
            routes.versionNames[x.versionIndex].withUnsafeBytes { PackedFields.append(name: VersionField.name, value: $0, to: fields) }
        }
        if x.generatedRequestID && !sawRequestID {
            x.requestID.withHex { PackedFields.append(name: RequestIDField.name, value: $0, to: fields) }
        }
        s.pendingStatus = response.status
        s.pendingHeadEnd = fields.readableCount
        s.bodiless = response.framing == .none
        s.connection.pendingHeads.append((s, start, fields.readableCount))
        scheduleHTTP2(s.connection)
    }

    /// Hands the queued response heads to the session, just before it writes: from now on a
    /// failure can only reset the stream. The exchange then goes on as the head allows (a
    /// bodiless response is complete; body bytes already decoded are pulled).
    func submitPendingHeads(_ c: H2Connection) {
        // In arrival order; an entry whose stream dropped its head (or was recycled, or queued
        // a newer one) is skipped.
        var index = 0
        while index < c.pendingHeads.count {
            let (s, start, end) = c.pendingHeads[index]
            index += 1
            guard s.pendingStatus != 0, s.pendingHeadEnd == end, c.streams[s.id] === s else { continue }
            c.session.beginResponse(status: s.pendingStatus)
            PackedFields.forEach(UnsafeRawBufferPointer(rebasing: c.pendingHeadFields.readableBytes[start..<end])) { name, value in
                c.session.responseField(name: name, value: value, lowercase: true)
            }
            s.dropPendingHead()
            s.responding = true
            do {
                try c.session.submitResponse(stream: s.id, hasBody: !s.bodiless)
            } catch {
                resetStream(s)
                continue
            }
            if let x = s.exchange { flushToStream(s, x) }
        }
        c.pendingHeads.removeAll(keepingCapacity: true)
        c.pendingHeadFields.clear()
        c.pendingHeadFields.releaseIfEmpty()
    }

    /// The version that served the response, and the request id the proxy made (unless the
    /// backend's response names one).
    func addRoutingFields(_ x: Exchange, _ session: H2ServerSession, sawRequestID: Bool) {
        if let routes = x.routes {
            routes.versionNames[x.versionIndex].withUnsafeBytes { session.responseField(name: UnsafeRawBufferPointer(staticString: VersionField.name), value: $0) }
        }
        if x.generatedRequestID && !sawRequestID {
            x.requestID.withHex { session.responseField(name: UnsafeRawBufferPointer(staticString: RequestIDField.name), value: $0) }
        }
    }

    /// Gives the session the trailer fields waiting for a stream (`PackedFields`: an HTTP/1.1
    /// backend's trailer section, or a gRPC backend's trailers), names lowercased; false when
    /// none may go on.
    static func addTrailerFields(_ packed: UnsafeRawBufferPointer, to session: H2ServerSession) -> Bool {
        var added = false
        PackedFields.forEach(packed) { name, value in
            guard HeaderRewrite.mayForwardTrailer(name: name) else { return }
            session.trailerField(name: name, value: value, lowercase: true)
            added = true
        }
        return added
    }

    /// Each `name: value` line of a section validated by the parser (an HTTP/1.1 backend's
    /// trailers: CRLF-ended, up to an empty line or the end), its value without surrounding
    /// whitespace.
    static func forEachFieldLine(_ section: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while let end = section[start...].firstIndex(of: ASCII.cr), end > start {
            let line = UnsafeRawBufferPointer(rebasing: section[start..<end])
            start = end + 2
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            var from = colon + 1, to = line.count
            while from < to, line[from] == ASCII.space || line[from] == ASCII.tab { from += 1 }
            while to > from, line[to - 1] == ASCII.space || line[to - 1] == ASCII.tab { to -= 1 }
            body(UnsafeRawBufferPointer(rebasing: line[0..<colon]), UnsafeRawBufferPointer(rebasing: line[from..<to]))
        }
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes of a string literal (static storage: valid for the program's life).
    init(staticString: StaticString) {
        self.init(start: staticString.utf8Start, count: staticString.utf8CodeUnitCount)
    }
}
