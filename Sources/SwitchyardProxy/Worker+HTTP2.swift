import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO

/// HTTP/2 client connections: bytes between the socket and the session, and one exchange per
/// stream. The backend side is the same as for HTTP/1.1 (`Worker+Upstream`); the seam is in
/// `Worker+Exchange`.
///
/// Calls from the session (`h2Request`, `h2ResponseData`, …) come while it reads or writes
/// frames. They change exchanges and queue frames, but never read or write the client socket:
/// only `serveHTTP2` does, in a loop, so no input drives recursion.
extension Worker {
    /// RFC 9113 §3.4: what a client speaking HTTP/2 sends first.
    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Looks at the first bytes of a connection that may speak HTTP/2: the preface makes it an
    /// HTTP/2 connection (`d` is handed over and marked closed); anything else is HTTP/1.1; a
    /// part of the preface waits for more.
    func checkPreface(_ d: DownstreamConnection) {
        let bytes = d.input.readableBytes
        let count = min(bytes.count, Self.preface.count)
        guard bytes.prefix(count).elementsEqual(Self.preface.prefix(count)) else {
            d.mayBeHTTP2 = false
            return
        }
        if count == Self.preface.count { upgradeToHTTP2(d) }
    }

    private func upgradeToHTTP2(_ d: DownstreamConnection) {
        d.mayBeHTTP2 = false
        guard let limits = settings.http2, let session = try? H2ServerSession(limits: limits, builder: h2HeadBuilder, allocator: h2Allocator) else { return }
        let c = H2Connection(
            transport: d.transport, session: session, worker: self, clientAddress: d.clientAddress, acceptedAt: d.acceptedAt,
            buffers: buffers)
        c.token = d.token
        c.readable = d.readable
        c.peerHungUp = d.peerHungUp
        c.input.append(d.input.readableBytes)
        d.input.clear()
        d.closed = true  // handed over: the socket is the HTTP/2 connection's now
        descriptors.http2Clients += 1
        table.replace(d.token, with: .h2(c))
        c.deadline = now + settings.serverTimeouts.idleMs
        if draining { goAway(c, .drain) }
        serveHTTP2(c)
    }

    func h2Event(_ c: H2Connection, _ readiness: Readiness) {
        if readiness.contains(.hangup) { c.peerHungUp = true }
        if readiness.contains(.readable) || readiness.contains(.hangup) { c.readable = true }
        serveHTTP2(c)
    }

    /// The connection's one loop: hands read bytes to the session, writes what it has to
    /// send, and reads on while the client takes what it is sent.
    func serveHTTP2(_ c: H2Connection) {
        var budget = Self.readBudget
        while !c.closed {
            if !c.input.isEmpty {
                do {
                    try c.session.receive(c.input.readableBytes)
                } catch {
                    // The session queued GOAWAY with the reason: it goes out, then the connection closes.
                    c.input.clear()
                    c.goingAway = true
                    flushHTTP2(c)
                    return closeHTTP2(c)
                }
                c.input.clear()
            }
            flushHTTP2(c)
            // Backpressure: a client that does not read what it is sent is not read from.
            guard !c.closed, c.readable, c.output.isEmpty else { break }
            guard budget > 0 else {
                if !c.yielded {
                    c.yielded = true
                    yieldTurn(.h2(c))
                }
                break
            }
            switch Relay.fill(c.input, from: c.transport, peerHungUp: c.peerHungUp) {
            case .data(let count, let drained):
                budget -= count
                if drained { c.readable = false }
            case .drained:
                c.readable = false
            case .endOfFile:
                return closeHTTP2(c)
            }
        }
        guard !c.closed else { return }
        c.input.releaseIfEmpty()
        let finished = !c.session.wantsRead && !c.session.wantsWrite
        if c.output.isEmpty && (finished || (c.goingAway && c.streams.isEmpty)) { closeHTTP2(c) }
    }

    /// Writes what the session has for the client until it has nothing more or the socket is
    /// full. The session's frames (a few bytes each for small responses) are gathered into
    /// `output` and leave in one write per `writeBatch`. Backend reads paused for room go on in
    /// between: their bytes become DATA frames.
    private func flushHTTP2(_ c: H2Connection) {
        while !c.closed {
            if !c.pendingHeads.isEmpty { submitPendingHeads(c) }
            do {
                while c.output.readableCount < Self.writeBatch, let bytes = try c.session.send() {
                    c.output.append(bytes)  // copied: the session reuses its buffer
                }
                if !c.output.isEmpty {
                    var none = 0
                    var written = 0
                    guard try Relay.send(head: c.output, source: c.output, pending: &none, to: c.transport, written: &written) else { return }
                    c.output.releaseIfEmpty()
                    continue
                }
            } catch {
                return closeHTTP2(c)
            }
            guard !c.paused.isEmpty else { return }
            while let u = c.paused.popLast() {
                if u.readable && !u.closed { readUpstream(u) }
            }
        }
    }

    /// Session output gathered before a write.
    static let writeBatch = 65536

    /// Serves the connection once the current batch of readiness events is handled, so that
    /// responses of many streams arriving together leave in one write.
    func scheduleHTTP2(_ c: H2Connection) {
        guard !c.scheduled else { return }
        c.scheduled = true
        scheduledHTTP2.append(c)
    }

    /// Drain or idle: GOAWAY with the last stream taken; those streams finish, no new ones start.
    func goAway(_ c: H2Connection, _ reason: H2GoAwayReason) {
        guard !c.goingAway else { return }
        c.goingAway = true
        c.session.goAway(reason)
        serveHTTP2(c)
    }

    func h2TimedOut(_ c: H2Connection) {
        goAway(c, .idleTimeout)
        closeHTTP2(c)
    }

    func closeHTTP2(_ c: H2Connection) {
        guard !c.closed else { return }
        c.closed = true
        if let reason = c.session.goAwayReason { tally.counters.http2GoAways[reason.rawValue] += 1 }
        for s in c.streams.values {
            if let x = s.exchange { perform(x, x.machine.clientGone()) }
            h2Streams.release(s)
        }
        c.streams.removeAll()
        c.paused.removeAll()
        c.pendingHeads.removeAll()
        c.pendingHeadFields.clear()
        c.pendingHeadFields.releaseIfEmpty()
        table.remove(c.token)
        c.transport.close()
        descriptors.clients -= 1
        descriptors.http2Clients -= 1
    }

    // MARK: - Streams (called by the session)

    func h2Request(_ c: H2Connection, stream: Int32, head: H2RequestView, endStream: Bool) {
        guard !c.closed else { return }
        let s = h2Streams.acquire(id: stream, connection: c)
        c.streams[stream] = s
        c.exchanges += 1
        c.deadline = 0
        let x = exchanges.acquire()
        x.timings.accepted = c.acceptedAt
        x.timings.started = nowNs
        x.timings.headParsed = nowNs
        x.client = .h2(s)
        s.exchange = x
        s.requestEnded = endStream
        startStreamExchange(s, x, head, endStream: endStream)
    }

    func h2RequestData(_ c: H2Connection, stream: Int32, bytes: UnsafeRawBufferPointer) {
        if let s = c.streams[stream], let x = s.exchange, x.grpc { return callRequestBytes(s, x, bytes) }
        guard let s = c.streams[stream], let x = s.exchange, !x.requestBody.complete else {
            // Nobody takes them (the answer was given): the window opens at once.
            c.session.consume(stream: stream, bytes: bytes.count)
            return
        }
        s.requestInput.append(bytes)
        s.unconsumed += bytes.count
        _ = x.requestBody.decode(s.requestInput)
        if let u = x.upstream { perform(x, flushToUpstream(x, u)) }
    }

    func h2RequestEnd(_ c: H2Connection, stream: Int32, trailers: [H2Field]) {
        guard let s = c.streams[stream] else { return }
        s.requestEnded = true
        guard let x = s.exchange else { return }
        // The stream's window no longer matters; the connection's gets its bytes back.
        if s.unconsumed > 0 {
            c.session.consume(stream: stream, bytes: s.unconsumed)
            s.unconsumed = 0
        }
        if x.grpc { return callRequestEnded(x) }
        if s.chunkedUpload {
            let before = s.requestInput.readableCount
            for field in trailers where field.name.withUnsafeBytes(HeaderRewrite.mayForwardTrailer(name:)) {
                s.requestInput.append(field.name)
                s.requestInput.append(": " as StaticString)
                s.requestInput.append(field.value)
                s.requestInput.append("\r\n" as StaticString)
            }
            s.requestInput.append("\r\n" as StaticString)
            _ = x.requestBody.decode(s.requestInput)
            x.requestBody.endOfInput(trailer: s.requestInput.readableCount - before)
        }
        if let u = x.upstream { perform(x, flushToUpstream(x, u)) }
    }

    func h2StreamClosed(_ c: H2Connection, stream: Int32, errorCode: UInt32) {
        guard let s = c.streams.removeValue(forKey: stream) else { return }
        if s.unconsumed > 0 { c.session.consumeConnection(bytes: s.unconsumed) }
        // A stream closed before its response was complete (reset by the client): the
        // backend connection closes, which is how Ray Serve learns to stop a generator.
        if let x = s.exchange { perform(x, x.machine.clientGone()) }
        h2Streams.release(s)
    }

    /// Response body bytes for the session's next DATA frame: a proxy-made answer's, or the
    /// backend's as they were decoded. The exchange completes when the last one is handed over.
    func h2ResponseData(_ c: H2Connection, stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        guard let s = c.streams[stream] else { return (0, true) }
        guard let x = s.exchange else {
            let count = s.output.move(into: buffer)
            if s.output.isEmpty { responseEnded(s) }
            return (count, s.output.isEmpty)
        }
        if x.grpc { return streamCallResponse(s, x, into: buffer) }
        guard let u = x.upstream else { return nil }
        let count = u.input.move(into: buffer, limit: u.responseBody.data)
        if count > 0 {
            u.responseBody.sent(count)
            s.bytesSent += count
            if u.readable && c.paused.last !== u { c.paused.append(u) }
        }
        guard u.responseBody.complete && u.responseBody.data == 0 else { return count > 0 ? (count, false) : nil }
        if u.responseBody.tail > 0 {
            let section = UnsafeRawBufferPointer(rebasing: u.input.readableBytes[0..<u.responseBody.tail])
            Self.forEachFieldLine(section) { name, value in PackedFields.append(name: name, value: value, to: s.trailers) }
            u.input.consume(u.responseBody.tail)
            u.responseBody.takeTrailer()
        }
        recycle(x, u)
        perform(x, x.machine.responseComplete())
        responseEnded(s)
        return (count, true)
    }

    /// The trailer fields of a stream whose response body ended: the backend's, as received.
    func h2ResponseTrailers(_ c: H2Connection, stream: Int32) -> Bool {
        guard let s = c.streams[stream], !s.trailers.isEmpty else { return false }
        defer {
            s.trailers.clear()
            s.trailers.releaseIfEmpty()
        }
        return Self.addTrailerFields(s.trailers.readableBytes, to: c.session)
    }

    // MARK: - The seam's HTTP/2 side (see `Worker+Exchange`)

    /// Sends what the backend's response has ready: the session asks for it again.
    func flushToStream(_ s: H2Stream, _ x: Exchange) {
        guard s.responding, let u = x.upstream, u.state == .streamingBody else { return }
        if s.bodiless {
            // HEAD, 204, 304: the head was the whole response.
            guard u.responseBody.isFinished else { return }
            recycle(x, u)
            perform(x, x.machine.responseComplete())
            responseEnded(s)
        } else if u.responseBody.data > 0 || u.responseBody.complete {
            s.connection.session.resume(stream: s.id)
        }
    }

    /// A proxy-made answer on a stream (nothing of a response was queued for it yet); to a gRPC
    /// call, a Trailers-Only response with the error's gRPC status.
    func rejectStream(_ s: H2Stream, _ x: Exchange, _ error: ProxyError, message: String) {
        let version = x.routes.map { $0.versionNames[x.versionIndex] }
        let requestID = x.generatedRequestID ? x.requestID : nil
        s.responding = true
        if x.grpc {
            x.grpcStatus = GRPC.status(error)
            let fields = GRPC.trailersOnly(error, message: message, version: version, requestID: requestID)
            if (try? s.connection.session.respond(stream: s.id, status: 200, fields: fields, hasBody: false)) == nil {
                s.connection.session.reset(stream: s.id, errorCode: Self.internalError)
            }
            finish(x, .rejected(error))
            return responseEnded(s)
        }
        s.dropPendingHead()
        let body = ErrorRenderer.body(error, message: message)
        s.output.append(body)
        let fields = ErrorRenderer.http2Fields(error, bodyLength: body.utf8.count, version: version, requestID: requestID)
        let c = s.connection
        if (try? c.session.respond(stream: s.id, status: error.status, fields: fields, hasBody: true)) == nil {
            c.session.reset(stream: s.id, errorCode: Self.internalError)
        }
        finish(x, .rejected(error))
    }

    /// The last frame of a response is queued. A client still sending its request is asked to
    /// stop (RFC 9113 §8.1: RST_STREAM NO_ERROR after a complete response). Not a gRPC client:
    /// grpc-core takes that reset for a failed call even after a complete answer, and it ends
    /// its side at once anyway.
    func responseEnded(_ s: H2Stream) {
        if !s.requestEnded && !s.grpc { s.connection.session.reset(stream: s.id, errorCode: 0) }
    }

    /// A stream's exchange finished: with none left in progress, the idle timeout runs.
    func streamExchangeFinished(_ s: H2Stream) {
        let c = s.connection
        c.exchanges -= 1
        if c.exchanges == 0 { c.deadline = now + settings.serverTimeouts.idleMs }
    }

    /// The exchange ended without a complete response (a cut, the backend gone): the stream is
    /// reset, unless it is gone already.
    func resetStream(_ s: H2Stream) {
        let c = s.connection
        if !c.closed, c.streams[s.id] === s { c.session.reset(stream: s.id, errorCode: Self.internalError) }
    }

    /// RFC 9113 §7 INTERNAL_ERROR.
    private static let internalError: UInt32 = 2
}
