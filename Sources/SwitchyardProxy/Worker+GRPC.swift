import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO

/// gRPC calls to a version's gRPC endpoints: each call from a client's HTTP/2 stream goes on
/// as a stream of an HTTP/2 connection to the backend (`H2UpstreamConnection`), head, DATA
/// frames and trailers relayed as they come, flow control tied both ways: a stream's window
/// opens only as the other side takes its bytes.
///
/// The exchange machine decides as for any exchange; the calls here report to it.
extension Worker {
    /// Starts a routed gRPC call: the head for the backend is written down (a failed connect
    /// sends it to the next endpoint), then the call goes to an endpoint.
    func startCall(_ s: H2Stream, _ x: Exchange, _ head: H2RequestView) {
        writeCallHead(s, x, head, into: x.forwardedHead)
        x.machine.routed()
        perform(x, callNext(x))
    }

    /// Puts the call on a connection to the least loaded gRPC endpoint of its version not yet
    /// tried; the exchange machine's `noEndpointLeft` when none is left.
    func callNext(_ x: Exchange) -> ExchangeMachine.Action? {
        if let g = x.call { releaseCall(x, g) }
        while let pool = nextEndpoint(x, grpc: true) {
            if let g = callConnection(pool), attachCall(x, g) { return nil }
        }
        return x.machine.noEndpointLeft()
    }

    /// The call's head as `name: value` lines, pseudo-header fields first: the client's fields
    /// less the hop-by-hop and forwarding ones, then the proxy's forwarding fields, the
    /// version's upstream token, the request id.
    private func writeCallHead(_ s: H2Stream, _ x: Exchange, _ head: H2RequestView, into out: ByteBuffer) {
        let upstreamAuthorization = x.routes?.authorizationLines[x.versionIndex]
        let authority = head.authority.isEmpty ? (head.field("host") ?? head.authority) : head.authority
        Self.writeLine(out, ":method" as StaticString, head.method)
        Self.writeLine(out, ":scheme" as StaticString, UnsafeRawBufferPointer(staticString: "http"))
        Self.writeLine(out, ":authority" as StaticString, authority)
        Self.writeLine(out, ":path" as StaticString, head.path)
        var forwardedFor = 0
        for index in 0..<head.fieldCount {
            let name = head.name(at: index)
            let kind = KnownHeader.classify(name)
            switch HeaderRewrite.request(kind, toHTTP2: true) {
            case .drop:
                continue
            case .hop:
                forwardedFor += 1
                continue
            case .framing:
                // Host went as :authority; HTTP/2 has no other framing field but Content-Length.
                if kind != .contentLength { continue }
            case .authorization:
                if !settings.forwardAuthorization || upstreamAuthorization != nil { continue }
            case .copy:
                break
            }
            out.append(name)
            out.append(": " as StaticString)
            out.append(head.value(at: index))
            out.append("\r\n" as StaticString)
        }
        if let line = upstreamAuthorization {
            // `Authorization: Bearer <token>\r\n` as a field.
            line.withUnsafeBytes { Self.writeLine(out, "authorization" as StaticString, UnsafeRawBufferPointer(rebasing: $0[15..<($0.count - 2)])) }
        }
        HeaderRewrite.writeForwarding(
            into: out, .http2, priorHops: { hop in Self.forEachForwardedFor(head, count: forwardedFor, hop) },
            client: s.connection.clientAddress, tls: s.connection.transport.isTLS, host: authority,
            requestID: x.generatedRequestID ? x.requestID : nil)
    }

    private static func writeLine(_ out: ByteBuffer, _ name: StaticString, _ value: UnsafeRawBufferPointer) {
        out.append(name)
        out.append(": " as StaticString)
        out.append(value)
        out.append("\r\n" as StaticString)
    }

    /// Submits the call's written-down head on `g`; false when the connection takes no more
    /// streams (it is then retired).
    private func attachCall(_ x: Exchange, _ g: H2UpstreamConnection) -> Bool {
        guard case .h2(let s) = x.client, let stream = submitCall(x, g, hasBody: !(s.requestEnded && s.requestInput.isEmpty)) else {
            g.retiring = true
            return false
        }
        x.call = g
        x.callStream = stream
        x.callRequestSent = s.requestEnded && s.requestInput.isEmpty
        g.calls[stream] = x
        g.pool.active += 1
        x.callDeadline = responseDeadline(x)
        if !g.connecting {
            g.deadline = 0
            callConnected(x)
        }
        scheduleCall(g)
        return true
    }

    /// The call's connection is up: the exchange machine hears it, and the written-down head
    /// is no longer needed.
    func callConnected(_ x: Exchange) {
        x.timings.upstreamConnected = nowNs
        x.machine.connected(resendable: false)
        x.forwardedHead.clear()
        x.forwardedHead.releaseIfEmpty()
    }

    /// The head lines of `writeCallHead` as an HTTP/2 request on `g`'s session.
    private func submitCall(_ x: Exchange, _ g: H2UpstreamConnection, hasBody: Bool) -> Int32? {
        guard g.session.acceptsRequests else { return nil }
        let lines = x.forwardedHead.readableBytes
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        var (method, scheme, authority) = (none, none, none)
        var start = 0
        var index = 0
        while let end = lines[start...].firstIndex(of: ASCII.cr) {
            // A pseudo-header field's name starts with ":"; the separator is the next ": ".
            var colon = start + 1
            while lines[colon] != UInt8(ascii: ":") { colon += 1 }
            let name = UnsafeRawBufferPointer(rebasing: lines[start..<colon])
            let value = UnsafeRawBufferPointer(rebasing: lines[(colon + 2)..<end])
            switch index {
            case 0: method = value
            case 1: scheme = value
            case 2: authority = value
            case 3: g.session.beginRequest(method: method, scheme: scheme, authority: authority, path: value)
            default: g.session.requestField(name: name, value: value)
            }
            index += 1
            start = end + 2
        }
        return try? g.session.submitRequest(hasBody: hasBody)
    }

    /// The exchange lets go of its call: a stream still open at the backend is cancelled
    /// (gRPC's CANCELLED reaches the server's handler).
    func releaseCall(_ x: Exchange, _ g: H2UpstreamConnection) {
        x.call = nil
        guard g.calls.removeValue(forKey: x.callStream) != nil else { return }
        g.pool.active -= 1
        if !(x.callRequestSent && x.callResponseEnded) && !g.closed {
            g.session.reset(stream: x.callStream, errorCode: Self.cancel)
            scheduleCall(g)
        }
        callsChanged(g)
    }

    /// RFC 9113 §7 CANCEL.
    private static let cancel: UInt32 = 8

    // MARK: - From the backend's session

    /// The backend's response head goes to the client's stream with the version that served it.
    func callResponse(_ g: H2UpstreamConnection, stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool) {
        guard let x = g.calls[stream], case .h2(let s) = x.client else { return }
        x.timings.firstResponseByte = nowNs
        x.status = status
        x.callDeadline = x.deadline
        x.machine.responseHeadQueued(at: clientBytesQueued(x))
        let session = s.connection.session
        session.beginResponse(status: status)
        var sawRequestID = false
        for index in 0..<fields.count {
            let name = fields.name(at: index)
            let kind = KnownHeader.classify(name)
            guard HeaderRewrite.response(kind, toHTTP2: true) == .copy else { continue }
            if kind == .requestID { sawRequestID = true }
            if endStream && ASCII.equalsExact(name, "grpc-status") { x.grpcStatus = GRPC.statusCode(fields.value(at: index)) }
            session.responseField(name: name, value: fields.value(at: index))
        }
        addRoutingFields(x, session, sawRequestID: sawRequestID)
        s.responding = true
        scheduleHTTP2(s.connection)
        do {
            try session.submitResponse(stream: s.id, hasBody: !endStream)
        } catch {
            return perform(x, x.machine.upstreamFailed(.upstreamProtocolError, responseBytesReceived: true, clientBytesSent: clientBytesSent(x)))
        }
        guard endStream else { return }
        // Trailers-Only: the head was the whole response.
        x.callResponseEnded = true
        perform(x, x.machine.responseComplete())
        responseEnded(s)
    }

    /// Response bytes wait with the client's stream until its session sends them on; the
    /// backend's window opens as it does (`streamCallResponse`).
    func callResponseData(_ g: H2UpstreamConnection, stream: Int32, bytes: UnsafeRawBufferPointer) {
        guard let x = g.calls[stream], case .h2(let s) = x.client else {
            g.session.consume(stream: stream, bytes: bytes.count)
            return
        }
        x.callDeadline = x.deadline
        s.output.append(bytes)
        s.connection.session.resume(stream: s.id)
        scheduleHTTP2(s.connection)
    }

    /// The backend ended its response: its trailers wait with the client's stream for the
    /// last DATA frame. The bytes still waiting give their window back now: the stream is
    /// done, only the connection's window counts them.
    func callResponseEnd(_ g: H2UpstreamConnection, stream: Int32, trailers: H2FieldsView?) {
        guard let x = g.calls[stream], case .h2(let s) = x.client else { return }
        x.callResponseEnded = true
        if !s.output.isEmpty { g.session.consume(stream: stream, bytes: s.output.readableCount) }
        if let trailers {
            x.grpcStatus = trailers.field("grpc-status").map(GRPC.statusCode) ?? -1
            for index in 0..<trailers.count {
                PackedFields.append(name: trailers.name(at: index), value: trailers.value(at: index), to: s.trailers)
            }
        }
        s.connection.session.resume(stream: s.id)
        scheduleHTTP2(s.connection)
    }

    /// A stream of the backend connection is gone. Complete, the rest of its response is with
    /// the client; otherwise the backend reset it, and the client gets UNAVAILABLE (nothing of
    /// the response sent yet) or a reset stream.
    func callClosed(_ g: H2UpstreamConnection, stream: Int32, errorCode: UInt32) {
        guard let x = g.calls.removeValue(forKey: stream) else { return }
        x.call = nil
        g.pool.active -= 1
        callsChanged(g)
        if x.callResponseEnded { return }
        let action = x.machine.upstreamFailed(
            .upstreamClosed, responseBytesReceived: x.timings.firstResponseByte != 0, clientBytesSent: clientBytesSent(x))
        perform(x, action, message: "the gRPC backend reset the call (HTTP/2 error code \(errorCode))")
        if case .h2(let s) = x.client { scheduleHTTP2(s.connection) }
    }

    /// Request body bytes for the backend's stream, as the client's stream received them; the
    /// client's window opens by as many.
    func callRequestData(_ g: H2UpstreamConnection, stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard let x = g.calls[stream], case .h2(let s) = x.client else { return (0, true) }
        let count = s.requestInput.move(into: buffer)
        if count > 0 {
            s.requestInput.releaseIfEmpty()
            x.upstreamBytes += count
            uploadProgressed(s)
            scheduleHTTP2(s.connection)
        }
        if s.requestEnded && s.requestInput.isEmpty {
            x.callRequestSent = true
            return (count, true)
        }
        return count > 0 ? (count, false) : nil
    }

    // MARK: - From the client's stream

    /// Request body bytes from the client: on to the backend's stream as its window allows.
    func callRequestBytes(_ s: H2Stream, _ x: Exchange, _ bytes: UnsafeRawBufferPointer) {
        guard let g = x.call else {
            // The call is over (answered or cancelled): nobody takes them.
            s.connection.session.consume(stream: s.id, bytes: bytes.count)
            return
        }
        s.requestInput.append(bytes)
        s.unconsumed += bytes.count
        g.session.resume(stream: x.callStream)
        scheduleCall(g)
    }

    /// The client ended its request: the backend's stream ends once its bytes are out.
    func callRequestEnded(_ x: Exchange) {
        guard let g = x.call else { return }
        g.session.resume(stream: x.callStream)
        scheduleCall(g)
    }

    /// Response bytes for the client's next DATA frame; the backend's window opens by as
    /// many. The exchange completes with the last of them (the trailers follow).
    func streamCallResponse(_ s: H2Stream, _ x: Exchange, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        let count = s.output.move(into: buffer)
        if count > 0 {
            s.output.releaseIfEmpty()
            s.bytesSent += count
            if !x.callResponseEnded, let g = x.call {
                g.session.consume(stream: x.callStream, bytes: count)
                scheduleCall(g)
            }
        }
        guard x.callResponseEnded && s.output.isEmpty else { return count > 0 ? (count, false) : nil }
        perform(x, x.machine.responseComplete())
        responseEnded(s)
        return (count, true)
    }

    /// Ends a call's response stream with `status` in its trailers, after what of the
    /// backend's response is still queued.
    func endCallStream(_ s: H2Stream, status: Int, message: String) {
        let c = s.connection
        guard !c.closed, c.streams[s.id] === s else { return }
        s.trailers.clear()
        PackedFields.append(name: "grpc-status", to: s.trailers) { $0.append(decimal: status) }
        PackedFields.append(name: "grpc-message", to: s.trailers) { $0.append(GRPC.percentEncoded(message)) }
        c.session.resume(stream: s.id)
        scheduleHTTP2(c)
    }
}
