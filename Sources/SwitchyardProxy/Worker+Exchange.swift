import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting

/// Where an exchange meets its client. The backend side (`Worker+Upstream`) runs the same way
/// for every client; what it needs of the client goes through these few calls, each a switch
/// on `Exchange.client`.
extension Worker {
    /// The buffer the request body arrives in.
    func requestSource(_ x: Exchange) -> ByteBuffer {
        switch x.client {
        case .h1(let d): d.input
        case .h2(let s): s.requestInput
        case .detached: preconditionFailure("an exchange without a client has no request")
        }
    }

    /// Response bytes that reached the client: once any did, a failure can only cut.
    func clientBytesSent(_ x: Exchange) -> Int {
        switch x.client {
        case .h1(let d): d.bytesSent
        case .h2(let s): s.responding ? s.bytesSent + 1 : 0
        case .detached: 0
        }
    }

    /// Where the next byte queued for the client will be in its output stream.
    func clientBytesQueued(_ x: Exchange) -> Int {
        switch x.client {
        case .h1(let d): d.bytesSent + d.output.readableCount
        case .h2(let s): s.responding || s.pendingStatus != 0 ? s.bytesSent + 1 : 0
        case .detached: 0
        }
    }

    /// Queues the response head for the client.
    func writeResponseHead(_ x: Exchange, _ u: UpstreamConnection, headLength: Int) {
        switch x.client {
        case .h1(let d): writeH1ResponseHead(d, x, u, headLength: headLength)
        case .h2(let s): writeResponseHead(s, x, u, headLength: headLength)
        case .detached: break
        }
    }

    /// An interim response (100, 103) as the backend sent it.
    func forwardInterim(_ x: Exchange, _ head: UnsafeRawBufferPointer) {
        switch x.client {
        case .h1(let d): d.output.append(head)
        case .h2, .detached: break  // not relayed to HTTP/2 clients

        }
    }

    /// Sends what is queued for the client; may complete the exchange.
    func flushToClient(_ x: Exchange) {
        switch x.client {
        case .h1(let d): flushToDownstream(d)
        case .h2(let s): flushToStream(s, x)
        case .detached: break
        }
    }

    /// After an event on the backend side: the client side goes on (pipelined requests, a close).
    func serveClient(_ client: Exchange.Client) {
        switch client {
        case .h1(let d): if !d.closed { serveDownstream(d) }
        case .h2(let s): if !s.connection.closed { scheduleHTTP2(s.connection) }
        case .detached: break
        }
    }

    /// The exchange machine's `respond`: a proxy-made answer replaces a response head still
    /// queued, and the exchange finishes.
    func answerClient(_ x: Exchange, _ error: ProxyError, message: String) {
        switch x.client {
        case .h1(let d): reject(d, x, error, message: message)
        case .h2(let s): rejectStream(s, x, error, message: message)
        case .detached: finish(x, .rejected(error))
        }
    }

    /// The response is complete and out.
    func completeExchange(_ x: Exchange) {
        switch x.client {
        case .h1(let d): completeH1Exchange(d, x)
        case .h2: finish(x, .completed)
        case .detached: finish(x, .completed)
        }
    }

    /// Ends the exchange with `outcome` and the client's side with it: an HTTP/1.1 connection
    /// closes (a cut response must not look complete).
    func endClient(_ x: Exchange, _ outcome: ExchangeOutcome) {
        let client = x.client
        // A gRPC call whose response began ends with its status in trailers, not a reset
        // (which a gRPC client reports as INTERNAL): a deadline reached is DEADLINE_EXCEEDED.
        var callStatus: (code: Int, message: String)?
        if case .h2(let s) = client, s.grpc, s.responding, case .truncated(let error) = outcome {
            let deadline = x.deadline != 0 && now >= x.deadline
            callStatus = deadline
                ? (4, "the call's deadline (grpc-timeout) passed before the backend finished")
                : (GRPC.status(error), "the backend's response was cut off (\(error.label))")
            x.grpcStatus = callStatus?.code ?? x.grpcStatus
        }
        finish(x, outcome)
        switch client {
        case .h1(let d): if !d.closed { closeDownstream(d) }
        case .h2(let s):
            if let callStatus { endCallStream(s, status: callStatus.code, message: callStatus.message) } else { resetStream(s) }
        case .detached: break
        }
    }

    /// Request body bytes of a stream left for the backend: its window opens by as many.
    func uploadProgressed(_ s: H2Stream) {
        let taken = s.unconsumed - s.requestInput.readableCount
        guard taken > 0 else { return }
        s.connection.session.consume(stream: s.id, bytes: taken)
        s.unconsumed -= taken
    }

    // MARK: - Routing

    /// Authenticates the request and chooses its version: the pinned one, or one sampled by
    /// weight. On failure, what to answer; a version chosen but unavailable counts the failure.
    func route(_ x: Exchange, authorization: UnsafeRawBufferPointer?, pinned: UnsafeRawBufferPointer?) -> (ProxyError, String)? {
        let routes = self.routes
        switch routes.snapshot.decide(authorization: authorization, pinned: pinned, random: nextRandom()) {
        case .sampled(let index):
            x.route = .sampled
            x.versionIndex = index
        case .pinned(let index):
            x.route = .pinned
            x.versionIndex = index
        case .unavailable(let index, let pinned):
            x.route = pinned ? .pinned : .sampled
            x.versionIndex = index
            x.routes = routes
            routes.stats[index].stats.routed()
            return (.versionUnavailable, unavailableMessage(routes.snapshot, index, pinned: pinned))
        case .unauthorized(.missing):
            // Closed once answered (as nginx does): a client without a valid token gets no
            // keep-alive connection to pipeline more guesses on.
            return (.missingToken, "missing Authorization: Bearer <token> header")
        case .unauthorized:
            return (.invalidToken, "the Bearer token is not valid")
        case .unknownVersion:
            let name = pinned.map { String(decoding: $0, as: UTF8.self) } ?? ""
            // Dark versions are not named to a caller who does not know them already.
            let known = routes.snapshot.versions.filter { $0.trafficBasisPoints > 0 }.map(\.name).joined(separator: ", ")
            return (.unknownVersion, "no version named \"\(name)\" (\(VersionField.http1Name)); versions taking traffic: \(known)")
        }
        x.routes = routes
        routes.stats[x.versionIndex].stats.routed()
        return nil
    }

    /// Why a version cannot take the request, and what the caller can do about it.
    private func unavailableMessage(_ snapshot: RoutingSnapshot, _ index: Int, pinned: Bool) -> String {
        let name = snapshot.versions[index].name
        if pinned {
            // As for an unknown name, dark versions are not named to the caller.
            let running = snapshot.versions.indices.filter { !snapshot.plan.isUnavailable($0) && snapshot.versions[$0].trafficBasisPoints > 0 }
            return "version \"\(name)\" has no healthy endpoint; versions taking traffic: \(running.map { snapshot.versions[$0].name }.joined(separator: ", "))"
        }
        return "version \"\(name)\" has no healthy endpoint and its share of the traffic fails (on_unhealthy: fail)"
    }

    // MARK: - Ending

    /// The one place an exchange ends: its outcome is counted, a backend connection still
    /// attached is closed, and the object goes back to the pool. Detaching it from its client
    /// makes a second finish impossible: a client finishes only the exchange it still holds.
    func finish(_ x: Exchange, _ outcome: ExchangeOutcome) {
        if let g = x.call { releaseCall(x, g) }
        if let u = x.upstream {
            detach(x, u)
            closeUpstream(u)
        }
        x.timings.finished = nowNs
        let clientAddress: [UInt8]
        switch x.client {
        case .h1(let d):
            x.clientBytes = d.bytesSent + d.output.readableCount - x.clientBytesBase
            clientAddress = d.clientAddress
            d.exchange = nil
        case .h2(let s):
            x.clientBytes = s.bytesSent
            clientAddress = s.connection.clientAddress
            s.exchange = nil
            streamExchangeFinished(s)
        case .detached:
            clientAddress = []
        }
        tally.counters.record(outcome, retries: x.retries, clientBytes: x.clientBytes, upstreamBytes: x.upstreamBytes)
        let cell = if let routes = x.routes { routes.stats[x.versionIndex] } else { tally.unrouted }
        let status = Self.answeredStatus(x, outcome)
        cell.stats.record(x, outcome, status: status)
        if let log = accessLog {
            let error: ProxyError? = switch outcome {
            case .rejected(let error), .truncated(let error): error
            case .completed, .tunnelled, .clientGone: nil
            }
            if log.wants(status: status, failed: error != nil, random: nextRandom()) {
                log.record(x, client: clientAddress, status: status, error: error)
            }
        }
        exchanges.release(x)
    }

    /// The status the client got: the backend's, the proxy's answer (200 for a gRPC call: its
    /// error is in `grpc-status`), 0 for none complete.
    private static func answeredStatus(_ x: Exchange, _ outcome: ExchangeOutcome) -> Int {
        switch outcome {
        case .completed, .tunnelled: return x.status
        case .rejected(let error): return x.grpc ? 200 : error.status
        case .clientGone, .truncated: return 0
        }
    }

    /// The response is complete and flushed: the backend connection goes back to the pool
    /// only when it got this whole request, sent exactly this response and nothing after it.
    func recycle(_ x: Exchange, _ u: UpstreamConnection) {
        let reusable = u.machine.release(
            requestFinished: x.requestBody.isFinished, responseFinished: u.responseBody.isFinished,
            nothingAfter: u.input.isEmpty && socketIsQuiet(u), peerOpen: !u.peerHungUp, poolOpen: !u.pool.retired && !draining)
        detach(x, u)
        if reusable {
            u.responseBody = BodyRelay(.none)
            u.deadline = now + UInt64(settings.upstreamIdleMs)
            u.pool.idle.append(u)
        } else {
            closeUpstream(u)
        }
    }

    /// True when a read finds the backend's socket empty: edge-triggered epoll reports bytes
    /// that arrive later, but not ones already waiting after a read that stopped early.
    private func socketIsQuiet(_ u: UpstreamConnection) -> Bool {
        guard u.readable else { return true }
        switch Relay.fill(u.input, from: u.transport, peerHungUp: u.peerHungUp) {
        case .drained:
            u.readable = false
            u.input.releaseIfEmpty()
            return true
        case .data, .endOfFile:
            return false
        }
    }
}
