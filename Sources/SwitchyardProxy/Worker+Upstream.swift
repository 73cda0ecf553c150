import SwitchyardHTTP
import SwitchyardIO

/// The backend side of an exchange: connecting, failover, relaying the response.
extension Worker {
    /// Takes an idle pooled connection or starts a new one to the least loaded endpoint of the
    /// exchange's version not tried yet. Nil when every endpoint failed.
    func connectUpstream(_ x: Exchange) -> UpstreamConnection? {
        // Each pass marks one endpoint tried, so the loop ends after at most every endpoint.
        while let pool = nextEndpoint(x, grpc: false) {
            if let idle = pool.idle.popLast() {
                idle.machine.assigned()
                idle.deadline = responseDeadline(x)
                attach(x, idle)
                return idle
            }
            guard let u = openConnection(to: pool, for: x) else {
                if x.outOfDescriptors { return nil }  // the same for every endpoint
                continue  // refused at once: next endpoint
            }
            attach(x, u)
            return u
        }
        return nil
    }

    /// The next endpoint to try for the exchange: the least loaded of its version not tried
    /// yet, `limits.max_connect_attempts` at most in all, and of the ejected or unhealthy ones
    /// (tried only when no other is left) one at most. So a version whose endpoints all drop
    /// SYNs costs a request at most that many `timeouts.connect_ms`, not one per endpoint.
    func nextEndpoint(_ x: Exchange, grpc: Bool) -> UpstreamPool? {
        guard let routes = x.routes, x.triedEndpoints.count < settings.maxConnectAttempts,
              let (index, pool, ejected) = routes.pick(version: x.versionIndex, grpc: grpc, excluding: x.triedEndpoints, now: now),
              !(ejected && x.triedEjected) else { return nil }
        if x.endpoint != nil { x.retries += 1 }
        x.triedEndpoints.insert(index)
        x.triedEjected = x.triedEjected || ejected
        x.endpoint = pool
        return pool
    }

    /// `retry_other_version`: an unpinned request whose version has no reachable endpoint
    /// (nothing sent yet) is routed once more, by the effective weights without that version.
    /// Not between versions with different upstream tokens: the head written for one carries
    /// its token, which the other's backends must never see.
    func connectOtherVersion(_ x: Exchange) -> UpstreamConnection? {
        guard let routes = x.routes, x.route == .sampled, !x.rerouted,
              routes.snapshot.versions[x.versionIndex].retryOtherVersion,
              let other = routes.snapshot.alternative(to: x.versionIndex, random: nextRandom()),
              routes.authorizationLines[other] == routes.authorizationLines[x.versionIndex] else { return nil }
        routes.stats[x.versionIndex].stats.started -= 1
        routes.stats[other].stats.routed()
        x.rerouted = true
        x.versionIndex = other
        x.triedEndpoints = EndpointSet()
        x.triedEjected = false
        return connectUpstream(x)
    }

    /// Starts a non-blocking connect to `pool`'s address; nil if it failed at once. A TLS
    /// backend's handshake starts when the connect completes (epoll reports a new socket
    /// writable at once if it connected at once).
    private func openConnection(to pool: UpstreamPool, for x: Exchange) -> UpstreamConnection? {
        guard let (fd, progress) = connectSocket(to: pool, for: x) else { return nil }
        let transport: PeerTransport
        if let tls = pool.tls, let sessions = pool.sessions {
            guard let connection = tls.connect(fd: fd, serverName: pool.serverName, sessions: sessions) else {
                Syscall.close(fd)
                return nil
            }
            transport = .tls(connection)
        } else {
            transport = .plain(SocketTransport(fd: fd))
        }
        let ready = progress == .connected && pool.tls == nil
        if ready { pool.ejection.connected() }
        let u = UpstreamConnection(transport: transport, pool: pool, connected: ready, buffers: buffers, limits: settings.headLimits)
        guard let token = register(fd, .upstream(u)) else { return nil }
        u.token = token
        descriptors.backendSockets += 1
        let timeout = ready ? settings.timeouts.responseMs : settings.timeouts.connectMs
        u.deadline = now + UInt64(timeout)
        return u
    }

    /// A socket connecting (or connected) to `pool`'s address; nil when the connect failed at
    /// once: counted against the endpoint, unless the proxy itself is out of descriptors
    /// (then `x` says so, and no endpoint is blamed).
    func connectSocket(to pool: UpstreamPool, for x: Exchange?) -> (fd: Int32, progress: Socket.ConnectProgress)? {
        do {
            return try Socket.connect(to: pool.address)
        } catch where error.isOutOfResources {
            x?.outOfDescriptors = true
            reportDescriptorShortage(error)
            return nil
        } catch {
            recordConnectFailure(pool)
            return nil
        }
    }

    func attach(_ x: Exchange, _ u: UpstreamConnection) {
        x.upstream = u
        u.exchange = x
        u.pool.active += 1
        if u.state != .connecting { upstreamReady(x, u) }
    }

    func detach(_ x: Exchange, _ u: UpstreamConnection) {
        x.upstream = nil
        u.exchange = nil
        u.pool.active -= 1
    }

    /// The connection can take the request: a pooled one at once, a new one when its connect
    /// completed. A reused connection may turn out closed by the backend, so the head is kept
    /// for one resend when the request allows it.
    private func upstreamReady(_ x: Exchange, _ u: UpstreamConnection) {
        x.timings.upstreamConnected = nowNs
        x.machine.connected(resendable: u.machine.reused && x.resendAllowed)
    }

    // MARK: - Running the exchange machine

    /// Runs what the exchange machine decided, and what it decides next, in one loop: a failed
    /// connect or write comes back as the next action, not as a nested call. `message` is the
    /// detail for a proxy-made answer (a default one per error otherwise).
    @inline(__always)
    func perform(_ x: Exchange, _ first: ExchangeMachine.Action?, message: String? = nil) {
        // Most calls bring no action (a write that went through): no call for them.
        guard let first else { return }
        run(x, first, message: message)
    }

    private func run(_ x: Exchange, _ first: ExchangeMachine.Action, message: String?) {
        var next: ExchangeMachine.Action? = first
        var message = message
        while let action = next {
            next = nil
            switch action {
            case .connectNext where x.grpc:
                next = callNext(x)
            case .connectNext:
                if let u = x.upstream { dropUpstream(x, u) }
                guard let u = connectUpstream(x) ?? connectOtherVersion(x) else {
                    next = x.machine.noEndpointLeft(tlsFailed: x.tlsFailure != nil, outOfDescriptors: x.outOfDescriptors)
                    message = x.tlsFailure
                    continue
                }
                next = flushToUpstream(x, u)
            case .resend:
                guard let failed = x.upstream else {
                    next = x.machine.noEndpointLeft()
                    continue
                }
                let pool = failed.pool
                dropUpstream(x, failed)
                x.retries += 1
                guard let fresh = openConnection(to: pool, for: x) else {
                    next = x.machine.noEndpointLeft(outOfDescriptors: x.outOfDescriptors)
                    message = "could not reconnect to \(pool.address)"
                    continue
                }
                x.forwardedHead.clear()
                x.forwardedHead.append(x.resendHead.readableBytes)
                attach(x, fresh)
                next = flushToUpstream(x, fresh)
            case .respond(let error):
                answerClient(x, error, message: message ?? defaultMessage(error, x))
            case .cut(let error):
                endClient(x, .truncated(error))
            case .finish(.completed):
                completeExchange(x)
            case .finish(let outcome):
                endClient(x, outcome)
            }
        }
    }

    /// Closes a backend connection the exchange gives up on.
    private func dropUpstream(_ x: Exchange, _ u: UpstreamConnection) {
        detach(x, u)
        closeUpstream(u)
    }

    /// When a backend that stays silent from now on has taken too long: `timeouts.response_ms`
    /// from now, or the call's own deadline if that comes first.
    func responseDeadline(_ x: Exchange?) -> UInt64 {
        let silence = now + UInt64(settings.timeouts.responseMs)
        guard let x, x.deadline != 0 else { return silence }
        return min(silence, x.deadline)
    }

    private func defaultMessage(_ error: ProxyError, _ x: Exchange) -> String {
        switch error {
        case .upstreamTimeout where x.deadline != 0 && now >= x.deadline:
            return "the call's deadline (grpc-timeout) passed before the backend answered"
        case .upstreamConnectFailed:
            let name = x.routes.map { $0.snapshot.versions[x.versionIndex].name } ?? "?"
            return "could not connect to any endpoint of version \(name)"
        case .upstreamTimeout:
            return "the backend did not answer within timeouts.response_ms"
        case .tooManyConnections where x.outOfDescriptors:
            return "the proxy is out of file descriptors for backend connections; try again"
        case .tooManyConnections:
            return "no backend descriptor came free within timeouts.connect_ms (the proxy is at its descriptor budget); try again"
        case .requestTimeout:
            return "the request head did not arrive within timeouts.request_head_ms"
        default:
            return "\(error.label)"
        }
    }

    // MARK: - Backend events

    func upstreamEvent(_ u: UpstreamConnection, _ readiness: Readiness) {
        if readiness.contains(.hangup) { u.peerHungUp = true }
        if readiness.contains(.readable) || readiness.contains(.hangup) { u.readable = true }
        // The exchange may end below; its client is served on afterwards.
        let client = u.exchange?.client
        switch u.state {
        case .connecting where u.handshaking:
            continueHandshake(u)
        case .connecting:
            guard readiness.contains(.writable) || readiness.contains(.hangup) else { return }
            if Socket.pendingError(u.fd) != 0 {
                connectFailed(u)
            } else if u.transport.isTLS {
                u.handshaking = true
                continueHandshake(u)
            } else {
                connectionReady(u)
            }
        case .idle:
            // Bytes or a close from a backend with no request outstanding: it cannot be trusted
            // with the next one.
            closeUpstream(u)
            return
        case .awaitingHead, .streamingBody, .tunnel:
            if readiness.contains(.writable), let x = u.exchange { perform(x, flushToUpstream(x, u)) }
        }
        if u.readable && !u.closed && u.state != .connecting { readUpstream(u) }
        // The exchange may have ended: the client side reads on (pipelined requests, a close).
        if let client { serveClient(client) }
    }

    /// The connection can carry the request: TCP connected, and for TLS the handshake done.
    private func connectionReady(_ u: UpstreamConnection) {
        u.pool.ejection.connected()
        u.machine.connected()
        u.deadline = responseDeadline(u.exchange)
        if let x = u.exchange {
            upstreamReady(x, u)
            perform(x, flushToUpstream(x, u))
        }
    }

    /// Moves a backend's TLS handshake on; a failed one counts as a failed connect, and its
    /// reason is what the client reads if no endpoint is left.
    private func continueHandshake(_ u: UpstreamConnection) {
        guard let tls = u.transport.tls else { return }
        do {
            guard try tls.handshake() == .done else { return }
            u.handshaking = false
            connectionReady(u)
        } catch {
            if let x = u.exchange {
                let name = u.pool.serverName
                x.tlsFailure = "TLS handshake with \(u.pool.address)\(name.isEmpty || name == u.pool.address.host ? "" : " (\(name))") failed: \(error)"
            }
            connectFailed(u)
        }
    }

    /// The connect failed or timed out before any request byte was sent: the endpoint is
    /// ejected for a while and the exchange machine decides what next.
    private func connectFailed(_ u: UpstreamConnection) {
        recordConnectFailure(u.pool)
        guard let x = u.exchange else {
            closeUpstream(u)
            return
        }
        dropUpstream(x, u)
        perform(x, x.machine.connectFailed())
    }

    /// A connect to `pool` failed: the endpoint is ejected for a backoff. Reported when it goes
    /// out, not when it fails again while out (tried because nothing else was left), so the
    /// backoff bounds how often.
    func recordConnectFailure(_ pool: UpstreamPool) {
        pool.connectFailures += 1
        let wasOut = pool.ejection.isEjected(at: now)
        let backoff = pool.ejection.connectFailed(at: now)
        if !wasOut {
            controlMailbox.post(.endpointEjected(
                worker: id, address: pool.address, grpc: pool.grpc, failures: pool.ejection.failures, backoffMs: backoff))
        }
    }

    /// Sends the forwarded head and pending request body bytes to the backend. A failed write
    /// comes back as the exchange machine's next action.
    func flushToUpstream(_ x: Exchange, _ u: UpstreamConnection) -> ExchangeMachine.Action? {
        guard !u.closed, u.state != .connecting else { return nil }
        var written = 0
        defer { x.upstreamBytes += written }
        do {
            _ = try Relay.pump(&x.requestBody, head: x.forwardedHead, source: requestSource(x), to: u.transport, written: &written)
            x.forwardedHead.releaseIfEmpty()
            if case .h2(let s) = x.client { uploadProgressed(s) }
            // An upload still moving is not a backend that stopped answering.
            if written > 0, u.state == .awaitingHead { u.deadline = responseDeadline(x) }
            return nil
        } catch {
            return upstreamFailed(x, .upstreamClosed)
        }
    }

    /// What the exchange machine makes of a backend failure.
    private func upstreamFailed(_ x: Exchange, _ error: ProxyError) -> ExchangeMachine.Action? {
        x.machine.upstreamFailed(error, responseBytesReceived: x.timings.firstResponseByte != 0, clientBytesSent: clientBytesSent(x))
    }

    func readUpstream(_ u: UpstreamConnection) {
        defer { u.input.releaseIfEmpty() }
        var budget = Self.readBudget
        while u.readable && !u.closed {
            guard u.machine.mayRead(
                inputBytes: u.input.readableCount, buffered: u.responseBody.buffered,
                bodyComplete: u.responseBody.complete,
                highWaterMark: u.exchange?.responseOutput == .data ? Self.streamHighWaterMark : Self.highWaterMark) else { return }
            guard budget > 0 else {
                if !u.yielded {
                    u.yielded = true
                    yieldTurn(.upstream(u))
                }
                return
            }
            switch Relay.fill(u.input, from: u.transport, peerHungUp: u.peerHungUp) {
            case .data(let count, let drained):
                budget -= count
                if drained { u.readable = false }
                processUpstreamInput(u)
            case .drained:
                u.readable = false
            case .endOfFile:
                u.readable = false
                upstreamEndOfFile(u)
                return
            }
        }
    }

    private func processUpstreamInput(_ u: UpstreamConnection) {
        guard let x = u.exchange else {
            closeUpstream(u)
            return
        }
        if x.timings.firstResponseByte == 0 { x.timings.firstResponseByte = nowNs }
        while u.state == .awaitingHead {
            switch u.machine.parseHead(
                u.input.readableBytes, requestWasHead: x.requestWasHead, upgradeRequested: x.upgradeRequested,
                clientSpeaksHTTP11: x.clientSpeaksHTTP11)
            {
            case .needMore:
                flushToClient(x)
                return
            case .fault(let fault):
                return upstreamBroke(x, fault.error, message: fault.message)
            case .interim(let length, let forward):
                // 100 Continue, 103 Early Hints: passed on as they are; they do not extend
                // the response deadline.
                if forward { forwardInterim(x, UnsafeRawBufferPointer(rebasing: u.input.readableBytes[0..<length])) }
                u.input.consume(length)
            case .switchingProtocols(let length):
                x.status = 101
                if case .h1(let d) = x.client { startTunnel(d, x, u, headLength: length) }
                return
            case .final(let length):
                x.status = u.machine.response.status
                x.machine.responseHeadQueued(at: clientBytesQueued(x))
                writeResponseHead(x, u, headLength: length)
                u.input.consume(length)
                u.responseBody = BodyRelay(u.machine.response.framing, keepTrailers: x.acceptsTrailers, output: x.responseOutput)
            }
        }
        switch u.state {
        case .streamingBody:
            // Body bytes keep a slow response alive (the deadline is the gap between them).
            u.deadline = responseDeadline(x)
            if let error = u.responseBody.decode(u.input) {
                return upstreamBroke(x, .upstreamProtocolError, message: "the backend sent a malformed response body (\(error.message))")
            }
        case .tunnel:
            if case .h1(let d) = x.client { d.machine.tunnelActivity(now: now) }
            _ = u.responseBody.decode(u.input)
        default:
            break
        }
        flushToClient(x)
    }

    private func startTunnel(_ d: DownstreamConnection, _ x: Exchange, _ u: UpstreamConnection, headLength: Int) {
        writeH1ResponseHead(d, x, u, headLength: headLength)
        u.input.consume(headLength)
        x.machine.switchedProtocols()
        d.machine.tunnelled(now: now)
        u.deadline = 0
        // From here bytes flow both ways as they are; what either side sent early is tunnel data.
        x.requestBody = BodyRelay(.untilClose)
        _ = x.requestBody.decode(d.input)
        u.responseBody = BodyRelay(.untilClose)
        _ = u.responseBody.decode(u.input)
        flushToDownstream(d)
        if !d.closed { perform(x, flushToUpstream(x, u)) }
    }

    private func upstreamEndOfFile(_ u: UpstreamConnection) {
        guard let x = u.exchange else {
            closeUpstream(u)
            return
        }
        switch u.state {
        case .streamingBody where u.machine.response.framing == .untilClose:
            u.responseBody.endOfInput()
            flushToClient(x)
        case .tunnel:
            guard case .h1(let d) = x.client else { return }
            flushToDownstream(d)
            if !d.closed { perform(x, upstreamFailed(x, .upstreamClosed)) }
        default:
            upstreamBroke(x, .upstreamClosed, message: "the backend closed the connection before the response was complete")
        }
    }

    /// The backend failed mid-exchange: the exchange machine resends, answers 502 (nothing of
    /// the response reached the client yet), or cuts the client connection (a truncated
    /// response must not look complete).
    private func upstreamBroke(_ x: Exchange, _ error: ProxyError, message: String) {
        perform(x, upstreamFailed(x, error), message: message)
    }

    func upstreamTimedOut(_ u: UpstreamConnection) {
        let client = u.exchange?.client
        defer { if let client { serveClient(client) } }
        switch u.state {
        case .idle:
            closeUpstream(u)
        case .connecting:
            connectFailed(u)
        case .awaitingHead, .streamingBody, .tunnel:
            guard let x = u.exchange else { return closeUpstream(u) }
            perform(x, x.machine.upstreamTimedOut(clientBytesSent: clientBytesSent(x)))
        }
    }

    func closeUpstream(_ u: UpstreamConnection) {
        guard !u.closed else { return }
        u.closed = true
        if u.state == .idle, let index = u.pool.idle.firstIndex(where: { $0 === u }) {
            u.pool.idle.remove(at: index)
        }
        if let x = u.exchange, x.upstream === u { detach(x, u) }
        table.remove(u.token)
        u.transport.close()
        descriptors.backendSockets -= 1
    }
}
