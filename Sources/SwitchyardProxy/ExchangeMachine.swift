/// How an exchange goes on when something happens to it: decided here, without sockets, clock
/// or randomness. The worker reports each event and runs the action it gets back, in a loop
/// (`Worker.perform`); an event that asks the worker to try again (`connectNext`, `resend`)
/// is answered by another event, never by a nested call.
///
///                       connectFailed: connectNext
///                           ┌─────┐
///                           ▼     │
///     routing ──routed──▶ connecting ──connected──▶ awaitingHead ──head──▶ responding ──complete──▶ finished(completed)
///        │                 │    ▲                    │  │  │                  │
///        │ reject          │    └──── failed on a reused connection: resend   │ failed, timed out:
///        │                 │ noEndpointLeft          │  │  └─101─▶ tunnel      │ respond (nothing left yet)
///        ▼                 ▼                         │  ▼           │          ▼ or cut
///     finished(rejected)  finished(rejected)   failed, timed out: respond   finished(tunnelled)
///
/// Every path reaches `finished` exactly once: the action that gets it there is the only one
/// that finishes, and events after it are ignored (nil).
struct ExchangeMachine {
    enum State: Equatable {
        /// The head is parsed; no backend yet.
        case routing
        /// A backend connection is being opened.
        case connecting
        /// The request is (being) sent; no response head yet. `resendable`: the connection was
        /// reused from the pool and the request may be sent once more on a fresh one if it
        /// turns out to be closed (see `upstreamFailed`).
        case awaitingHead(resendable: Bool)
        /// The response head is queued for the client (at `responseHeadAt`).
        case responding
        /// After 101: bytes flow both ways.
        case tunnel
        case finished(ExchangeOutcome)
    }

    enum Action: Equatable {
        /// Open a connection to the next endpoint of the version not tried yet; report
        /// `connected` or `noEndpointLeft`.
        case connectNext
        /// Send the request once more on a fresh connection to the same endpoint; report
        /// `connected` or `noEndpointLeft`.
        case resend
        /// Drop a response head still queued, answer the client with this error, finish
        /// `rejected(error)`.
        case respond(ProxyError)
        /// Finish `truncated(error)` and close the client connection: part of the response
        /// reached the client, so a cut is the only honest end.
        case cut(ProxyError)
        /// Finish with this outcome (`completed`, `clientGone`, `tunnelled`).
        case finish(ExchangeOutcome)
    }

    private(set) var state = State.routing
    /// Where the final response head starts in the client connection's output stream: while
    /// the bytes sent have not passed it, nothing of the response reached the client.
    private(set) var responseHeadAt: Int?

    var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Whether part of a response head is queued or sent: a proxy-made answer then has to
    /// replace it (nothing reached the client yet) or the client connection is cut.
    var responseStarted: Bool {
        switch state {
        case .responding, .tunnel: return true
        default: return false
        }
    }

    // MARK: - Events

    /// Turned away before reaching a backend (401, 404, a malformed head, a head timeout).
    mutating func reject(_ error: ProxyError) -> Action? {
        end(.respond(error), .rejected(error))
    }

    mutating func routed() {
        guard state == .routing else { return }
        state = .connecting
    }

    /// A connection to a backend is ready for the request.
    mutating func connected(resendable: Bool) {
        guard state == .connecting else { return }
        state = .awaitingHead(resendable: resendable)
    }

    /// A connect failed (refused, or it did not complete within `timeouts.connect_ms`): no
    /// request byte reached the backend, so another endpoint may take it.
    mutating func connectFailed() -> Action? {
        guard state == .connecting else { return nil }
        return .connectNext
    }

    /// `connectNext` or `resend` found no endpoint to try. `tlsFailed`: the last attempt got
    /// a connection but its TLS handshake failed, which the answer says. `outOfDescriptors`:
    /// the proxy had no descriptor for a backend socket (no fault of the endpoints): 503.
    mutating func noEndpointLeft(tlsFailed: Bool = false, outOfDescriptors: Bool = false) -> Action? {
        guard state == .connecting else { return nil }
        let error: ProxyError = outOfDescriptors ? .tooManyConnections : tlsFailed ? .upstreamTLSFailed : .upstreamConnectFailed
        return end(.respond(error), .rejected(error))
    }

    /// The backend's final response head is queued for the client at `offset`.
    mutating func responseHeadQueued(at offset: Int) {
        guard case .awaitingHead = state else { return }
        state = .responding
        responseHeadAt = offset
    }

    /// Whether the request may be sent once more (see `upstreamFailed`): the worker keeps a
    /// copy of the forwarded head while this holds.
    var mayResend: Bool { state == .awaitingHead(resendable: true) }

    /// The backend switched protocols (101) for a WebSocket upgrade.
    mutating func switchedProtocols() {
        guard case .awaitingHead = state else { return }
        state = .tunnel
    }

    /// The whole response reached the client.
    mutating func responseComplete() -> Action? {
        guard case .responding = state else { return nil }
        return end(.finish(.completed), .completed)
    }

    /// The backend broke the exchange: a malformed response, a close before its end, a failed
    /// write. `responseBytesReceived`: some of its answer had arrived. `clientBytesSent`: the
    /// client connection's output offset reached so far.
    mutating func upstreamFailed(_ error: ProxyError, responseBytesReceived: Bool, clientBytesSent: Int) -> Action? {
        switch state {
        case .awaitingHead(resendable: true) where !responseBytesReceived:
            // A reused keep-alive connection the backend closed as it was reused (its idle
            // timer won the race): an idempotent request without a body cannot have been
            // processed, so it goes once more on a fresh connection.
            state = .connecting
            return .resend
        case .connecting, .awaitingHead:
            return end(.respond(error), .rejected(error))
        case .responding:
            return nothingSent(clientBytesSent) ? end(.respond(error), .rejected(error)) : end(.cut(error), .truncated(error))
        case .tunnel:
            return end(.finish(.tunnelled), .tunnelled)
        case .routing, .finished:
            return nil
        }
    }

    /// The backend's deadline passed (`timeouts.connect_ms` while connecting, otherwise
    /// `timeouts.response_ms` without a byte).
    mutating func upstreamTimedOut(clientBytesSent: Int) -> Action? {
        switch state {
        case .connecting:
            return connectFailed()
        case .awaitingHead:
            return end(.respond(.upstreamTimeout), .rejected(.upstreamTimeout))
        case .responding, .tunnel:
            return upstreamFailed(.upstreamTimeout, responseBytesReceived: true, clientBytesSent: clientBytesSent)
        case .routing, .finished:
            return nil
        }
    }

    /// The caller's own deadline (a gRPC call's `grpc-timeout`) passed: nothing more is tried,
    /// not even another endpoint while connecting.
    mutating func deadlinePassed(clientBytesSent: Int) -> Action? {
        guard state == .connecting else { return upstreamTimedOut(clientBytesSent: clientBytesSent) }
        return end(.respond(.upstreamTimeout), .rejected(.upstreamTimeout))
    }

    /// The request body broke its framing after part of it may have been sent on.
    mutating func requestBodyMalformed(clientBytesSent: Int) -> Action? {
        switch state {
        case .responding where !nothingSent(clientBytesSent):
            return end(.cut(.malformedRequest), .truncated(.malformedRequest))
        case .tunnel, .finished:
            return nil
        default:
            return end(.respond(.malformedRequest), .rejected(.malformedRequest))
        }
    }

    /// The client connection closed (or is being closed) under the exchange.
    mutating func clientGone() -> Action? {
        switch state {
        case .finished: return nil
        case .tunnel: return end(.finish(.tunnelled), .tunnelled)
        default: return end(.finish(.clientGone), .clientGone)
        }
    }

    private func nothingSent(_ clientBytesSent: Int) -> Bool {
        clientBytesSent <= (responseHeadAt ?? Int.max)
    }

    private mutating func end(_ action: Action, _ outcome: ExchangeOutcome) -> Action? {
        if isFinished { return nil }
        state = .finished(outcome)
        return action
    }
}
