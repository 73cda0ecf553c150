import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting

/// The client side of an exchange: reading requests, routing them, answering errors.
extension Worker {
    func downstreamEvent(_ d: DownstreamConnection, _ readiness: Readiness) {
        if readiness.contains(.hangup) { d.peerHungUp = true }
        if readiness.contains(.readable) || readiness.contains(.hangup) { d.readable = true }
        if readiness.contains(.writable) {
            downstreamWritable(d)
        }
        serveDownstream(d)
    }

    /// The client side's one loop: parses the next request once the previous answer has left,
    /// and reads while the connection's state lets it take more bytes.
    ///
    /// Exchanges that end (a response relayed, a proxy-made answer) only change the state; the
    /// event handlers call this loop afterwards. Nothing calls back into the parser from an
    /// ending exchange, so a client pipelining requests drives neither recursion nor output:
    /// at most one answer per connection waits in `output`, and reading pauses until it left.
    func serveDownstream(_ d: DownstreamConnection) {
        defer { d.input.releaseIfEmpty() }
        var budget = Self.readBudget
        while !d.closed {
            if d.machine.mayParse(inputEmpty: d.input.isEmpty, outputEmpty: d.output.isEmpty) {
                if d.mayBeHTTP2 { checkPreface(d) }  // may hand the connection over (closed) or wait for more
                if d.closed { return }
                if !d.mayBeHTTP2, parseRequest(d) { continue }
            }
            guard d.readable, downstreamMayRead(d) else { return }  // backpressure: `readable` stays set
            guard budget > 0 else {
                if !d.yielded {
                    d.yielded = true
                    yieldTurn(.downstream(d))
                }
                return
            }
            switch Relay.fill(d.input, from: d.transport, peerHungUp: d.peerHungUp) {
            case .data(let count, let drained):
                budget -= count
                if drained { d.readable = false }
                processDownstreamInput(d)
            case .drained:
                d.readable = false
            case .endOfFile:
                d.readable = false
                // A client that goes away mid-exchange cancels it: closing the backend
                // connection is how Ray Serve learns to stop a generator.
                closeDownstream(d)
                return
            }
        }
    }

    private func downstreamMayRead(_ d: DownstreamConnection) -> Bool {
        let body = d.exchange?.requestBody
        return d.machine.mayRead(
            inputBytes: d.input.readableCount, outputEmpty: d.output.isEmpty, bodyBuffered: body?.buffered ?? 0,
            bodyComplete: body?.complete ?? true, maxHeadBytes: settings.headLimits.maxHeadBytes, highWaterMark: Self.highWaterMark)
    }

    private func processDownstreamInput(_ d: DownstreamConnection) {
        switch d.machine.state {
        case .readingHead, .closing:
            break
        case .proxying:
            guard let x = d.exchange, !x.requestBody.complete, let u = x.upstream else { return }
            if decodeRequestBody(d, x), x.upstream === u { perform(x, flushToUpstream(x, u)) }
        case .tunnel:
            guard let x = d.exchange, let u = x.upstream else { return }
            d.machine.tunnelActivity(now: now)
            _ = x.requestBody.decode(d.input)
            perform(x, flushToUpstream(x, u))
        case .lingering:
            d.input.clear()
        }
    }

    /// Parses a request head at the front of the input and starts its exchange or answers it.
    /// False when the head is not complete yet.
    private func parseRequest(_ d: DownstreamConnection) -> Bool {
        let step = d.machine.parseRequest(d.input.readableBytes, now: now)
        if case .emptyLines(let count) = step {
            d.input.consume(count)
            return true
        }
        if step == .needMore && !d.machine.headStarted { return false }
        // The first byte of a request head arrived: its exchange starts.
        let x = d.exchange ?? beginExchange(d)
        switch step {
        case .needMore, .emptyLines:
            return false
        case .error(let error):
            perform(x, x.machine.reject(ProxyError(error)), message: "\(error.message)")
        case .head(let length):
            x.timings.headParsed = nowNs
            startExchange(d, x, headLength: length)
        }
        return true
    }

    private func beginExchange(_ d: DownstreamConnection) -> Exchange {
        let x = exchanges.acquire()
        x.timings.accepted = d.acceptedAt
        x.timings.started = nowNs
        x.clientBytesBase = d.bytesSent + d.output.readableCount
        x.client = .h1(d)
        d.exchange = x
        return x
    }

    /// Authenticates and routes a complete request head, then starts relaying it.
    private func startExchange(_ d: DownstreamConnection, _ x: Exchange, headLength: Int) {
        let head = UnsafeRawBufferPointer(rebasing: d.input.readableBytes[0..<headLength])
        let request = d.machine.request
        x.keepAlive = request.keepAlive && !draining
        x.requestWasHead = request.methodKind == .head
        x.upgradeRequested = request.upgrade
        x.clientSpeaksHTTP11 = request.version == .http11
        x.acceptsTrailers = request.acceptsTrailers
        // Set before any answer: a proxy-made answer to a request whose body was not read closes.
        x.requestBody = BodyRelay(request.framing)
        if let log = accessLog {
            let requestID = request.hasRequestID ? request.fields.first { $0.kind == .requestID }.map { $0.value.bytes(in: head) } : nil
            x.summary.capture(method: request.method.bytes(in: head), target: request.target.bytes(in: head),
                              requestID: requestID, query: log.capturesQuery)
            x.summary.httpVersion = request.version == .http10 ? 10 : 11
        }
        if request.methodKind == .connect {
            d.input.consume(headLength)
            perform(x, x.machine.reject(.methodNotAllowed), message: "CONNECT is not supported by this proxy")
            return
        }
        if let (error, message) = route(
            x, authorization: request.authorization.map { $0.bytes(in: head) }, pinned: request.pinnedVersion.map { $0.bytes(in: head) })
        {
            d.input.consume(headLength)
            perform(x, x.machine.reject(error), message: message)
            return
        }
        if request.upgrade { x.tunnelTokenHash = tokenHash(authorization: request.authorization, head: head) }
        if !request.hasRequestID {
            x.requestID = RequestID(high: nextRandom(), low: nextRandom())
            x.generatedRequestID = true
        }
        x.resendAllowed = request.framing == .none && request.methodKind.isIdempotent && !request.upgrade
        writeForwardedRequestHead(d, x, head: head, into: x.forwardedHead)
        d.input.consume(headLength)
        x.machine.routed()
        guard let u = connectUpstream(x) ?? connectOtherVersion(x) else {
            x.forwardedHead.clear()
            perform(x, x.machine.noEndpointLeft(outOfDescriptors: x.outOfDescriptors))
            return
        }
        if x.machine.mayResend { x.resendHead.append(x.forwardedHead.readableBytes) }
        d.machine.proxying()
        if decodeRequestBody(d, x), x.upstream === u { perform(x, flushToUpstream(x, u)) }
    }

    /// The keyed hash of the request's Bearer token (nil without authentication).
    private func tokenHash(authorization: ByteRange?, head: UnsafeRawBufferPointer) -> UInt64? {
        guard routes.snapshot.tokens != nil, let value = authorization?.bytes(in: head),
              let token = TokenSet.bearerToken(in: value) else { return nil }
        return TokenSet.hash(token)
    }

    /// Decodes newly arrived request body bytes, ready to send. False when the body broke its
    /// framing and the exchange ended.
    private func decodeRequestBody(_ d: DownstreamConnection, _ x: Exchange) -> Bool {
        guard let error = x.requestBody.decode(d.input) else { return true }
        // Part of the body may already be upstream: that request cannot be completed.
        x.keepAlive = false
        perform(x, x.machine.requestBodyMalformed(clientBytesSent: d.bytesSent), message: "\(error.message)")
        return false
    }

    // MARK: - Writing to the client

    func downstreamWritable(_ d: DownstreamConnection) {
        flushToDownstream(d)
        if d.closed { return }
        if let u = d.exchange?.upstream, u.readable, !u.closed { readUpstream(u) }
    }

    /// Sends proxy-made bytes, then relayed response bytes, to the client; then completes
    /// whatever was waiting for the output to drain.
    func flushToDownstream(_ d: DownstreamConnection) {
        let drained: Bool
        do {
            if let u = d.exchange?.upstream {
                drained = try Relay.pump(&u.responseBody, head: d.output, source: u.input, to: d.transport, written: &d.bytesSent)
            } else {
                var none = 0
                drained = try Relay.send(head: d.output, source: d.output, pending: &none, to: d.transport, written: &d.bytesSent)
            }
        } catch {
            closeDownstream(d)
            return
        }
        guard drained else { return }
        d.output.releaseIfEmpty()
        d.exchange?.upstream?.input.releaseIfEmpty()
        if d.machine.state == .proxying {
            if let x = d.exchange, let u = x.upstream, u.state == .streamingBody, u.responseBody.isFinished {
                recycle(x, u)
                perform(x, x.machine.responseComplete())
            }
            return
        }
        let next = d.machine.outputDrained(
            inputBuffered: !d.input.isEmpty, mayBeUnread: d.readable, peerHungUp: d.peerHungUp, draining: draining, now: now)
        switch next {
        case .none:
            break
        case .linger:
            d.transport.shutdownWrite()
            d.input.clear()
        case .close:
            closeDownstream(d)
        }
    }

    /// Answers with a proxy-made error and finishes the exchange (for `answerClient`). The
    /// connection closes once
    /// the answer is out when the error says so, without keep-alive, or when the request body
    /// has not fully arrived; otherwise the next request is read after it (by `serveDownstream`).
    func reject(_ d: DownstreamConnection, _ x: Exchange, _ error: ProxyError, message: String) {
        if let headAt = x.machine.responseHeadAt {
            d.output.truncateReadable(to: headAt - d.bytesSent)  // the queued head never left
        }
        let closing = error.closesConnection || !x.keepAlive || draining || !x.requestBody.complete
        let context = ErrorRenderer.Context(
            versionLine: x.routes.map { $0.versionHeaderLines[x.versionIndex] },
            requestID: x.generatedRequestID ? x.requestID : nil, close: closing)
        ErrorRenderer.http1(error, message: message, context: context, into: d.output)
        if !closing { d.input.consume(x.requestBody.buffered) }
        finish(x, .rejected(error))
        d.machine.answered(keepAlive: !closing, now: now)
        flushToDownstream(d)
    }

    /// Finishes a completed exchange (for `perform`) and lets `serveDownstream` read the next
    /// request, or closes.
    func completeH1Exchange(_ d: DownstreamConnection, _ x: Exchange) {
        // While draining, `keepAlive` is still true only for an answer whose head went out
        // as keep-alive before the drain: the client may send another request, which is
        // answered with Connection: close (closing now would reset it).
        let keepAlive = x.keepAlive && x.requestBody.complete
        // Body bytes the backend answered without reading belong to this request, not the next.
        if keepAlive { d.input.consume(x.requestBody.buffered) }
        finish(x, .completed)
        d.machine.answered(keepAlive: keepAlive, now: now)
        if !keepAlive { flushToDownstream(d) }
    }

    func downstreamTimedOut(_ d: DownstreamConnection) {
        if d.machine.timeoutAnswers408(), let x = d.exchange {
            perform(x, x.machine.reject(.requestTimeout))
        } else {
            closeDownstream(d)
        }
    }

    func closeDownstream(_ d: DownstreamConnection) {
        guard !d.closed else { return }
        d.closed = true
        if let x = d.exchange { perform(x, x.machine.clientGone()) }
        descriptors.clients -= 1
        // A TLS connection closed before its handshake ended got an alert or, for a plain HTTP
        // request, a 400: its socket lingers, so that the answer is not lost to a reset.
        if case .tls(let tls) = d.transport, !tls.handshakeDone, !d.peerHungUp {
            return linger(fd: tls.releaseDescriptor(), token: d.token)
        }
        table.remove(d.token)
        d.transport.close()
    }
}
