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
        while !d.closed {
            if d.state == .readingHead, d.output.isEmpty, !d.input.isEmpty, parseRequest(d) { continue }
            guard d.readable, downstreamMayRead(d) else { return }  // backpressure: `readable` stays set
            switch fill(d.input, from: d.fd, peerHungUp: d.peerHungUp) {
            case .data(let drained):
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
        switch d.state {
        case .readingHead:
            // The previous answer must leave before more requests are read.
            return d.output.isEmpty && d.input.readableCount <= settings.headLimits.maxHeadBytes
        case .proxying:
            // While the request body flows, unsent bytes are bounded by the high-water mark;
            // after it, a pipelined request may wait (and a close is noticed).
            return d.requestBody.complete
                ? d.input.readableCount <= settings.headLimits.maxHeadBytes
                : d.requestBody.buffered < Self.highWaterMark
        case .tunnel:
            return d.requestBody.buffered < Self.highWaterMark
        case .closing:
            return false
        case .lingering:
            return true
        }
    }

    private func processDownstreamInput(_ d: DownstreamConnection) {
        switch d.state {
        case .readingHead, .closing:
            break
        case .proxying:
            guard !d.requestBody.complete, let u = d.upstream else { return }
            decodeRequestBody(d)
            if !d.closed, d.upstream === u, u.state != .connecting { flushToUpstream(d, u) }
        case .tunnel:
            guard let u = d.upstream else { return }
            d.deadline = now + UInt64(settings.timeouts.idleMs)
            _ = d.requestBody.decode(d.input)
            flushToUpstream(d, u)
        case .lingering:
            d.input.clear()
        }
    }

    /// Parses a request head at the front of the input and starts its exchange or answers it.
    /// False when the head is not complete yet.
    private func parseRequest(_ d: DownstreamConnection) -> Bool {
        let skip = HeadParser.leadingEmptyLines(d.input.readableBytes)
        if skip > 0 { d.input.consume(skip) }
        if d.input.isEmpty { return false }
        if !d.headStarted {
            d.headStarted = true
            d.deadline = now + UInt64(settings.timeouts.requestHeadMs)
        }
        switch d.parser.parseRequest(d.input.readableBytes, into: &d.request) {
        case .needMore:
            return false
        case .error(let error):
            respondError(d, status: error.status, code: "\(error.code)", message: "\(error.message)", close: true)
        case .complete(let length):
            d.headStarted = false
            startExchange(d, headLength: length)
        }
        return true
    }

    /// Authenticates and routes a complete request head, then starts relaying it.
    private func startExchange(_ d: DownstreamConnection, headLength: Int) {
        let head = UnsafeRawBufferPointer(rebasing: d.input.readableBytes[0..<headLength])
        let request = d.request
        d.keepAlive = request.keepAlive && !draining
        let hasBody = request.framing != .none
        if request.methodKind == .connect {
            d.input.consume(headLength)
            respondError(d, status: 405, code: "method_not_allowed", message: "CONNECT is not supported by this proxy", close: true)
            return
        }
        let routes = self.routes
        let decision = routes.snapshot.decide(
            authorization: request.authorization.map { $0.bytes(in: head) },
            pinned: request.pinnedVersion.map { $0.bytes(in: head) },
            random: nextRandom())
        let versionIndex: Int
        switch decision {
        case .sampled(let index), .pinned(let index):
            versionIndex = index
        case .unauthorized(let failure):
            d.input.consume(headLength)
            let (error, message) = failure == .missing
                ? ("", "missing Authorization: Bearer <token> header")
                : (", error=\"invalid_token\"", "the Bearer token is not valid")
            // Closed once answered (as nginx does): a client without a valid token gets no
            // keep-alive connection to pipeline more guesses on.
            respondError(
                d, status: 401, code: "unauthorized", message: message,
                extraHeaders: "WWW-Authenticate: Bearer realm=\"switchyard\"\(error)\r\n", close: true)
            return
        case .unknownVersion:
            let name = request.pinnedVersion.map { String(decoding: $0.bytes(in: head), as: UTF8.self) } ?? ""
            d.input.consume(headLength)
            // Dark versions are not named to a caller who does not know them already.
            let known = routes.snapshot.versions.filter { $0.trafficBasisPoints > 0 }.map(\.name).joined(separator: ", ")
            respondError(
                d, status: 404, code: "unknown_version",
                message: "no version named \"\(name)\" (X-ANYSCALE-VERSION); versions taking traffic: \(known)", close: hasBody)
            return
        }
        d.routes = routes
        d.versionIndex = versionIndex
        if request.upgrade { d.tunnelTokenHash = tokenHash(authorization: request.authorization, head: head) }
        if !request.hasRequestID { generateRequestID(d) }
        guard let u = connectUpstream(d) else {
            d.input.consume(headLength)
            d.routes = nil
            respondError(d, status: 502, code: "upstream_connect_failed",
                         message: "could not connect to any endpoint of version \(routes.snapshot.versions[versionIndex].name)",
                         close: hasBody)
            return
        }
        writeForwardedRequestHead(d, head: head, into: u.output)
        d.retryable = u.reused && request.framing == .none && request.methodKind.isIdempotent && !request.upgrade
        if d.retryable {
            let copy = d.retryHead ?? ByteBuffer(pool: buffers.output)
            copy.append(u.output.readableBytes)
            d.retryHead = copy
        }
        d.input.consume(headLength)
        d.requestBody = BodyRelay(request.framing)
        d.state = .proxying
        d.deadline = 0  // the backend's deadlines govern the exchange now
        decodeRequestBody(d)
        if !d.closed, d.upstream === u, u.state != .connecting { flushToUpstream(d, u) }
    }

    /// The keyed hash of the request's Bearer token (nil without authentication).
    private func tokenHash(authorization: ByteRange?, head: UnsafeRawBufferPointer) -> UInt64? {
        guard routes.snapshot.tokens != nil, let value = authorization?.bytes(in: head),
              let token = TokenSet.bearerToken(in: value) else { return nil }
        return TokenSet.hash(token)
    }

    /// Decodes newly arrived request body bytes, ready to send.
    private func decodeRequestBody(_ d: DownstreamConnection) {
        guard let error = d.requestBody.decode(d.input) else { return }
        // Part of the body may already be upstream: that request cannot be completed.
        d.keepAlive = false
        if d.responseStarted {
            closeDownstream(d)
        } else {
            respondError(d, status: 400, code: "bad_request", message: "\(error.message)", close: true)
        }
    }

    private func generateRequestID(_ d: DownstreamConnection) {
        d.requestID = RequestID(high: nextRandom(), low: nextRandom())
        d.generatedRequestID = true
    }

    // MARK: - Writing to the client

    func downstreamWritable(_ d: DownstreamConnection) {
        flushToDownstream(d)
        if d.closed { return }
        if let u = d.upstream, u.readable, !u.closed { readUpstream(u) }
    }

    /// Sends proxy-made bytes, then relayed response bytes, to the client; then completes
    /// whatever was waiting for the output to drain.
    func flushToDownstream(_ d: DownstreamConnection) {
        let drained: Bool
        do {
            if let u = d.upstream {
                drained = try pump(&u.responseBody, head: d.output, source: u.input, to: d.fd, written: &d.bytesSent)
            } else {
                var none = 0
                drained = try relay(to: d.fd, head: d.output, source: d.output, pending: &none, written: &d.bytesSent)
            }
        } catch {
            closeDownstream(d)
            return
        }
        guard drained else { return }
        d.output.releaseIfEmpty()
        d.upstream?.input.releaseIfEmpty()
        switch d.state {
        case .closing:
            startLingering(d)
        case .proxying:
            if let u = d.upstream, u.state == .streamingBody, u.responseBody.isFinished { finishExchange(d, u) }
        case .readingHead:
            // An answer written while the worker started draining: the connection is idle now.
            if draining && d.input.isEmpty {
                d.state = .closing
                startLingering(d)
            }
        case .tunnel, .lingering:
            break
        }
    }

    /// Answers with a proxy-made error. The connection closes once the answer is out with
    /// `close`, without keep-alive, or when the request body has not fully arrived; otherwise
    /// the next request is read after it (by `serveDownstream`).
    func respondError(
        _ d: DownstreamConnection, status: Int, code: String, message: String,
        extraHeaders: String = "", close: Bool
    ) {
        if let u = d.upstream {
            detach(d, u)
            closeUpstream(u)
        }
        let closing = close || !d.keepAlive || draining || !d.requestBody.complete
        // Once a version was chosen, its failures are attributed to it, like its responses.
        let versionLine = d.routes.map { String(decoding: $0.versionHeaderLines[d.versionIndex], as: UTF8.self) } ?? ""
        ErrorResponse.write(
            into: d.output, status: status, code: code, message: message, extraHeaders: extraHeaders + versionLine,
            requestID: d.generatedRequestID ? d.requestID : nil, close: closing)
        if !closing { d.input.consume(d.requestBody.buffered) }
        d.endExchange()
        d.state = closing ? .closing : .readingHead
        d.deadline = now + UInt64(settings.timeouts.idleMs)
        flushToDownstream(d)
    }

    /// After the last response: close at once if the client sent nothing more; otherwise stop
    /// sending and read (discarding) what it still sends for a moment, so that closing with
    /// unread bytes does not reset the connection under the response.
    private func startLingering(_ d: DownstreamConnection) {
        if d.input.isEmpty && !d.readable {
            closeDownstream(d)
            return
        }
        Syscall.shutdownWrite(d.fd)
        d.state = .lingering
        d.input.clear()
        d.deadline = now + 1000
        if d.peerHungUp { closeDownstream(d) }
    }

    // MARK: - Ending

    /// The response is complete and flushed: recycle the backend connection and let
    /// `serveDownstream` read the next request (or close).
    func finishExchange(_ d: DownstreamConnection, _ u: UpstreamConnection) {
        // A backend connection goes back to the pool only when it got this whole request,
        // sent exactly this response and nothing after it.
        let reusable = u.response.keepAlive && d.requestBody.isFinished && u.input.isEmpty
            && u.response.framing != .untilClose && !u.pool.retired && !draining && !u.peerHungUp
            && socketIsQuiet(u)
        detach(d, u)
        if reusable {
            u.resetForReuse()
            u.state = .idle
            u.reused = true
            u.deadline = now + UInt64(settings.upstreamIdleMs)
            u.pool.idle.append(u)
        } else {
            closeUpstream(u)
        }
        let keepAlive = d.keepAlive && d.requestBody.complete && !draining
        // Body bytes the backend answered without reading belong to this request, not the next.
        if keepAlive { d.input.consume(d.requestBody.buffered) }
        d.endExchange()
        d.deadline = now + UInt64(settings.timeouts.idleMs)
        if !keepAlive {
            d.state = .closing
            flushToDownstream(d)
            return
        }
        d.state = .readingHead
    }

    /// True when a read finds the backend's socket empty: edge-triggered epoll reports bytes
    /// that arrive later, but not ones already waiting after a read that stopped early.
    private func socketIsQuiet(_ u: UpstreamConnection) -> Bool {
        guard u.readable else { return true }
        switch fill(u.input, from: u.fd, peerHungUp: u.peerHungUp) {
        case .drained:
            u.readable = false
            u.input.releaseIfEmpty()
            return true
        case .data, .endOfFile:
            return false
        }
    }

    func downstreamTimedOut(_ d: DownstreamConnection) {
        switch d.state {
        case .readingHead where d.headStarted:
            respondError(d, status: 408, code: "request_timeout",
                         message: "the request head did not arrive within timeouts.request_head_ms", close: true)
        default:
            closeDownstream(d)
        }
    }

    func closeDownstream(_ d: DownstreamConnection) {
        guard !d.closed else { return }
        d.closed = true
        if let u = d.upstream {
            detach(d, u)
            closeUpstream(u)
        }
        d.routes = nil
        table.remove(d.token)
        Syscall.close(d.fd)
        downstreamCount -= 1
    }
}
