import SwitchyardHTTP

/// The proxy's side of an HTTP/1.1 connection to a backend: its state, what a response head
/// means, when to read, and whether the connection may serve another request. Bytes go in,
/// decisions come out; no socket, clock or exchange inside.
///
///     connecting ──connected──▶ awaitingHead ──final head──▶ streamingBody ──released, clean──▶ idle
///                                  │    ▲ 1xx (≤ 16)                                             │
///                                  │    └───┘                                     taken from pool│
///                                  └──101 for an upgrade──▶ tunnel            awaitingHead ◀─────┘
struct H1ClientMachine {
    enum State: Equatable {
        /// Non-blocking connect in progress.
        case connecting
        /// Waiting in the pool.
        case idle
        /// Request sent (or being sent); waiting for the response head.
        case awaitingHead
        /// Relaying the response body.
        case streamingBody
        /// After 101: bytes flow both ways unchanged.
        case tunnel
    }

    /// What a backend did wrong; each becomes a `ProxyError` for the exchange.
    enum Fault: Equatable {
        case malformedHead
        case unrequestedSwitch
        case tooManyInterimResponses

        var error: ProxyError { .upstreamProtocolError }

        var message: String {
            switch self {
            case .malformedHead: return "the backend sent a malformed response head"
            case .unrequestedSwitch: return "the backend switched protocols without a WebSocket upgrade request"
            case .tooManyInterimResponses: return "the backend sent too many interim (1xx) responses"
            }
        }
    }

    /// What the bytes at the front of the input are.
    enum HeadStep: Equatable {
        case needMore
        /// An interim (1xx) response of `length` bytes: consumed, and passed to the client
        /// when `forward` (HTTP/1.1 clients only).
        case interim(length: Int, forward: Bool)
        /// The final response head: its body follows.
        case final(length: Int)
        /// 101 for a WebSocket upgrade: from here the connection is a tunnel.
        case switchingProtocols(length: Int)
        case fault(Fault)
    }

    /// Interim (1xx) responses accepted per exchange; more is a backend stuck in a loop (or
    /// hostile), and their bytes are capped by `limits.max_head_bytes` as well.
    static let maxInterimResponses = 16

    private(set) var state: State
    /// The last response head parsed; valid from `final`/`switchingProtocols` on.
    private(set) var response = ResponseHead()
    /// Whether the connection served an earlier request (came from the pool).
    private(set) var reused = false
    private var parser: HeadParser
    private let limits: HeadLimits
    private var interimResponses = 0
    private var interimBytes = 0

    init(connected: Bool, limits: HeadLimits) {
        state = connected ? .awaitingHead : .connecting
        parser = HeadParser(limits: limits)
        self.limits = limits
    }

    mutating func connected() {
        if state == .connecting { state = .awaitingHead }
    }

    /// Taken from the pool for a request.
    mutating func assigned() {
        if state == .idle { state = .awaitingHead }
    }

    /// Reads the response head at the front of `input`. The request facts decide what an
    /// interim or 101 response means.
    mutating func parseHead(
        _ input: UnsafeRawBufferPointer, requestWasHead: Bool, upgradeRequested: Bool, clientSpeaksHTTP11: Bool
    ) -> HeadStep {
        guard state == .awaitingHead else { return .needMore }
        switch parser.parseResponse(input, requestWasHead: requestWasHead, into: &response) {
        case .needMore:
            return .needMore
        case .error:
            return .fault(.malformedHead)
        case .complete(let length):
            parser.reset()
            let status = response.status
            if status == 101 {
                guard upgradeRequested else { return .fault(.unrequestedSwitch) }
                state = .tunnel
                return .switchingProtocols(length: length)
            }
            if status < 200 {
                interimResponses += 1
                interimBytes += length
                guard interimResponses <= Self.maxInterimResponses, interimBytes <= limits.maxHeadBytes else {
                    return .fault(.tooManyInterimResponses)
                }
                return .interim(length: length, forward: clientSpeaksHTTP11)
            }
            state = .streamingBody
            return .final(length: length)
        }
    }

    /// Whether to read more from the backend: not while `buffered` bytes wait for the client
    /// (backpressure), not past a head's size limit, and nothing after a complete response
    /// (bytes there make the connection unfit for reuse, checked on release).
    func mayRead(inputBytes: Int, buffered: Int, bodyComplete: Bool, highWaterMark: Int) -> Bool {
        guard buffered < highWaterMark else { return false }
        switch state {
        case .awaitingHead: return inputBytes <= limits.maxHeadBytes
        case .streamingBody: return !bodyComplete
        case .connecting, .idle, .tunnel: return true
        }
    }

    /// The exchange is done with the connection. It goes back to the pool (true) only when it
    /// received the whole request, sent one complete, self-delimited response with keep-alive
    /// and nothing after it, and nobody is closing: a connection with any doubt about where
    /// the next response starts must never serve another client.
    mutating func release(requestFinished: Bool, responseFinished: Bool, nothingAfter: Bool, peerOpen: Bool, poolOpen: Bool) -> Bool {
        guard state == .streamingBody, requestFinished, responseFinished, nothingAfter, peerOpen, poolOpen,
              response.keepAlive, response.framing != .untilClose else { return false }
        state = .idle
        reused = true
        interimResponses = 0
        interimBytes = 0
        parser.reset()
        return true
    }
}
