import SwitchyardHTTP2
import SwitchyardIO

/// HTTP/2 connections to gRPC endpoints: a few per endpoint per worker, each carrying up to
/// the backend's SETTINGS_MAX_CONCURRENT_STREAMS calls (and at most `callsPerConnection`).
/// As with client connections, the session's callbacks never touch the socket: `serveCall` is
/// the one loop, run after each batch of events for the connections that have work.
extension Worker {
    /// Calls put on one connection before another one is opened to the same endpoint.
    static let callsPerConnection = 100
    /// Connections per gRPC endpoint per worker; beyond them, calls wait in nghttp2's queue
    /// for a stream of the least loaded connection.
    static let connectionsPerCallEndpoint = 4
    /// The response window of a connection to a gRPC backend, shared by its streams (each has
    /// the default 64 KiB): how much of its responses may wait in the proxy for slow clients.
    static let callConnectionWindow: Int32 = 4 << 20

    /// A connection to `pool` that can take one more call: one with room, a new one, or the
    /// least loaded when every one is full. Nil when a new one could not be opened.
    func callConnection(_ pool: UpstreamPool) -> H2UpstreamConnection? {
        var leastLoaded: H2UpstreamConnection?
        var open = 0
        for g in pool.multiplexed where !g.retiring {
            if !g.session.acceptsRequests {
                g.retiring = true
                continue
            }
            open += 1
            let limit = min(Int(g.session.maxConcurrentStreams), Self.callsPerConnection)
            if g.calls.count < limit { return g }
            if g.calls.count < leastLoaded?.calls.count ?? Int.max { leastLoaded = g }
        }
        if open < Self.connectionsPerCallEndpoint, let fresh = openCallConnection(to: pool) { return fresh }
        return leastLoaded
    }

    private func openCallConnection(to pool: UpstreamPool) -> H2UpstreamConnection? {
        guard let (fd, progress) = connectSocket(to: pool, for: nil) else { return nil }
        guard let session = try? H2ClientSession(
            builder: h2HeadBuilder, allocator: h2Allocator, connectionWindowBytes: Self.callConnectionWindow,
            maxHeaderListBytes: settings.http2?.maxHeaderListBytes ?? 65536)
        else {
            Syscall.close(fd)
            return nil
        }
        let connecting = progress != .connected
        let g = H2UpstreamConnection(
            transport: .plain(SocketTransport(fd: fd)), session: session, pool: pool, worker: self, connecting: connecting, buffers: buffers)
        guard let token = register(fd, .call(g)) else { return nil }
        g.token = token
        descriptors.backendSockets += 1
        if connecting {
            g.deadline = now + UInt64(settings.timeouts.connectMs)
        } else {
            pool.ejection.connected()
        }
        pool.multiplexed.append(g)
        return g
    }

    func callEvent(_ g: H2UpstreamConnection, _ readiness: Readiness) {
        if readiness.contains(.hangup) { g.peerHungUp = true }
        if readiness.contains(.readable) || readiness.contains(.hangup) { g.readable = true }
        if g.connecting {
            guard readiness.contains(.writable) || readiness.contains(.hangup) else { return }
            guard Socket.pendingError(g.fd) == 0 else { return callConnectFailed(g) }
            g.connecting = false
            g.pool.ejection.connected()
            g.deadline = 0
            for x in g.calls.values { callConnected(x) }
            callsChanged(g)
        }
        serveCall(g)
    }

    /// Hands the backend's bytes to the session, writes what it has to send, and reads on
    /// while the backend takes what it is sent.
    func serveCall(_ g: H2UpstreamConnection) {
        var budget = Self.readBudget
        while !g.closed && !g.connecting {
            if !g.input.isEmpty {
                do {
                    try g.session.receive(g.input.readableBytes)
                } catch {
                    g.input.clear()
                    flushCall(g)
                    return closeCallConnection(g, message: "the gRPC backend broke the HTTP/2 protocol (\(error))")
                }
                g.input.clear()
            }
            flushCall(g)
            guard !g.closed, g.readable, g.output.isEmpty else { break }
            guard budget > 0 else {
                if !g.yielded {
                    g.yielded = true
                    yieldTurn(.call(g))
                }
                break
            }
            switch Relay.fill(g.input, from: g.transport, peerHungUp: g.peerHungUp) {
            case .data(let count, let drained):
                budget -= count
                if drained { g.readable = false }
            case .drained:
                g.readable = false
            case .endOfFile:
                return closeCallConnection(g, message: "the gRPC backend closed the connection")
            }
        }
        guard !g.closed, !g.connecting else { return }
        g.input.releaseIfEmpty()
        // After the backend's GOAWAY, once its last stream is done.
        if g.output.isEmpty && !g.session.wantsRead && !g.session.wantsWrite { closeCallConnection(g, message: "the gRPC backend went away") }
    }

    /// Writes what the session has for the backend, gathered, until the socket is full.
    private func flushCall(_ g: H2UpstreamConnection) {
        while !g.closed {
            do {
                while g.output.readableCount < Self.writeBatch, let bytes = try g.session.send() {
                    g.output.append(bytes)  // copied: the session reuses its buffer
                }
                guard !g.output.isEmpty else { return }
                var none = 0
                var written = 0
                guard try Relay.send(head: g.output, source: g.output, pending: &none, to: g.transport, written: &written) else { return }
                g.output.releaseIfEmpty()
            } catch {
                return closeCallConnection(g, message: "the gRPC backend closed the connection")
            }
        }
    }

    /// Serves the connection once the current batch of readiness events is handled.
    func scheduleCall(_ g: H2UpstreamConnection) {
        guard !g.scheduled, !g.closed else { return }
        g.scheduled = true
        scheduledCalls.append(g)
    }

    /// A call came or went: a connection with none waits `timeouts.upstream_idle_ms`, then
    /// closes (a retired one closes at once).
    func callsChanged(_ g: H2UpstreamConnection) {
        guard !g.connecting else { return }
        if !g.calls.isEmpty {
            g.deadline = 0
        } else if g.retiring || g.pool.retired || draining {
            g.deadline = now
        } else {
            g.deadline = now + UInt64(settings.upstreamIdleMs)
        }
    }

    /// The connect failed or timed out: the endpoint is ejected for a while, and each call on
    /// the connection (none of it was sent) goes to the next endpoint.
    private func callConnectFailed(_ g: H2UpstreamConnection) {
        recordConnectFailure(g.pool)
        closeCallConnection(g, message: nil)
    }

    /// Closes a connection; calls still on it fail (`message`) or, when it never connected,
    /// move to the next endpoint.
    func closeCallConnection(_ g: H2UpstreamConnection, message: String?) {
        guard !g.closed else { return }
        g.closed = true
        if let index = g.pool.multiplexed.firstIndex(where: { $0 === g }) { g.pool.multiplexed.remove(at: index) }
        table.remove(g.token)
        g.transport.close()
        descriptors.backendSockets -= 1
        let calls = g.calls
        g.calls.removeAll()
        for x in calls.values {
            x.call = nil
            g.pool.active -= 1
            let action = g.connecting
                ? x.machine.connectFailed()
                : x.machine.upstreamFailed(.upstreamClosed, responseBytesReceived: x.timings.firstResponseByte != 0, clientBytesSent: clientBytesSent(x))
            let client = x.client
            perform(x, action, message: message)
            if case .h2(let s) = client { scheduleHTTP2(s.connection) }
        }
    }

    /// The connection's own deadline: a connect that takes too long, or an idle connection.
    func callConnectionTimedOut(_ g: H2UpstreamConnection) {
        if g.connecting { return callConnectFailed(g) }
        if g.calls.isEmpty { closeCallConnection(g, message: nil) }
    }

    /// A call's silence deadline passed: `timeouts.response_ms` without a response head, or
    /// its `grpc-timeout` (then even a connect still under way is given up).
    func callTimedOut(_ x: Exchange) {
        let client = x.client
        let sent = clientBytesSent(x)
        perform(x, x.deadline != 0 && now >= x.deadline ? x.machine.deadlinePassed(clientBytesSent: sent) : x.machine.upstreamTimedOut(clientBytesSent: sent))
        if case .h2(let s) = client { scheduleHTTP2(s.connection) }
    }

    /// Runs after each batch of readiness events: client connections and backend connections
    /// that have frames to send, until none is left (serving one may give the other work).
    func serveScheduled() {
        while true {
            if let c = scheduledHTTP2.popLast() {
                c.scheduled = false
                if !c.closed { serveHTTP2(c) }
            } else if let g = scheduledCalls.popLast() {
                g.scheduled = false
                if !g.closed { serveCall(g) }
            } else {
                return
            }
        }
    }
}
