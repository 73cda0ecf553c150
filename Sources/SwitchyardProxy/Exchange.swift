import SwitchyardIO

/// One request and its response on a client connection, from the first byte of the request
/// head to the single `Worker.finish(_:_:)` that records its `ExchangeOutcome`.
///
///     first head byte ─▶ head parsed ─▶ routed ─▶ upstream connected ─▶ first response byte
///            │                │           │              │                      │
///            └── 400/408 ─────┴─ 401/404 ─┴── 502/504 ───┴──── relayed, cut ────┴─▶ finish(outcome)
///
/// Pooled per worker (`ExchangePool`): a keep-alive request reuses a recycled object, and an
/// idle client connection holds none.
final class Exchange {
    /// What happens next; the single source of how the exchange ends.
    var machine = ExchangeMachine()

    /// Where the request comes from and the response goes: a client connection speaking
    /// HTTP/1.1 (one exchange at a time), or one stream of an HTTP/2 connection.
    enum Client {
        case detached
        case h1(DownstreamConnection)
        case h2(H2Stream)
    }

    var client = Client.detached

    /// How the version was chosen.
    enum Route {
        case none, pinned, sampled
    }

    /// Points in the exchange's life on the monotonic clock, in ns; 0 = not reached.
    struct Timings {
        /// When the client connection was accepted (earlier requests may have used it since).
        var accepted: UInt64 = 0
        var started: UInt64 = 0
        var headParsed: UInt64 = 0
        var upstreamConnected: UInt64 = 0
        var firstResponseByte: UInt64 = 0
        var finished: UInt64 = 0
    }

    // Routing
    var route = Route.none
    /// The routes the exchange started with: it finishes on the version it was routed to even
    /// if a reload comes in between.
    var routes: WorkerRoutes?
    var versionIndex = 0
    /// Endpoints of the version already tried.
    var triedEndpoints = EndpointSet()
    /// One of them was ejected (or avoided for its health): no other ejected one is tried.
    var triedEjected = false
    /// Whether the request moved to another version after finding no reachable endpoint in
    /// the first (`retry_other_version`; once per request).
    var rerouted = false
    /// The pool of the endpoint last tried.
    var endpoint: UpstreamPool?
    /// Backend attempts after the first: the next endpoint after a failed connect, or the
    /// request sent once more on a fresh connection.
    var retries = 0
    var upstream: UpstreamConnection?
    /// A gRPC call, once routed, goes to the version's gRPC endpoints: `call` carries it as
    /// stream `callStream`.
    var call: H2UpstreamConnection?
    var callStream: Int32 = 0
    /// The backend's response ended (its trailers are with the client's stream).
    var callResponseEnded = false
    /// The request's last byte went to the backend's stream.
    var callRequestSent = false
    /// When the call fails for silence (ms, monotonic; 0 = never): `timeouts.response_ms` until
    /// the response head, then only the call's own `grpc-timeout`.
    var callDeadline: UInt64 = 0
    /// Why the last TLS handshake with a backend failed, for the 502 if no endpoint is left.
    var tlsFailure: String?
    /// A connect failed for lack of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    var outOfDescriptors = false
    /// When it began waiting for a backend descriptor (ms); 0 when not waiting.
    var waitingSince: UInt64 = 0

    // The request
    var keepAlive = true
    /// What the response side needs to know of the request.
    var requestWasHead = false
    var upgradeRequested = false
    var clientSpeaksHTTP11 = true
    /// The client takes trailer fields (HTTP/1.1 `TE: trailers`; always on HTTP/2).
    var acceptsTrailers = false
    /// How the response body leaves: as received (HTTP/1.1) or as data for DATA frames.
    var responseOutput = BodyRelay.Output.asReceived
    /// A gRPC call: proxy errors are answered as gRPC statuses, and once routed it goes to
    /// gRPC endpoints (`call`), never to HTTP/1.1 backends.
    var grpc = false
    /// When the caller stops waiting (monotonic ms; 0 = `timeouts.response_ms` only): a gRPC
    /// call's `grpc-timeout`.
    var deadline: UInt64 = 0
    /// The request body: decoded in the client's input, sent to the backend (re-encoded if chunked).
    var requestBody = BodyRelay(.none)
    /// `X-Request-Id` made for this request when the client sent none.
    var requestID = RequestID()
    var generatedRequestID = false
    /// The request head as forwarded to the backend, consumed as it is written. It stays here
    /// while connects fail over to the next endpoint.
    let forwardedHead: ByteBuffer
    /// A copy of the forwarded head while the request may be sent once more on a fresh
    /// connection (`ExchangeMachine.mayResend`).
    let resendHead: ByteBuffer
    /// Whether the request is one that may be resent: idempotent, without a body or upgrade.
    var resendAllowed = false
    /// The keyed hash of the token that opened a tunnel, to close it when the token is removed.
    var tunnelTokenHash: UInt64?

    // The response
    /// The backend's status (0 until its final head arrived).
    var status = 0
    /// A gRPC call's `grpc-status`: the backend's, or the proxy's answer's (-1 until known).
    var grpcStatus = -1

    var timings = Timings()
    /// Bytes written to the backend (forwarded head and body) and to the client.
    var upstreamBytes = 0
    var clientBytes = 0
    /// The client connection's output offset when the exchange started.
    var clientBytesBase = 0

    /// Both head buffers come from `headPool` and hold a block only while they hold bytes.
    init(headPool: BufferPool) {
        forwardedHead = ByteBuffer(pool: headPool)
        resendHead = ByteBuffer(pool: headPool)
    }

    /// Method, path and request id for the access log (captured only when it is on).
    var summary = RequestSummary()

    deinit {
        summary.deallocate()
    }

    /// Clears the object for its next request.
    func reset() {
        summary.clear()
        machine = ExchangeMachine()
        client = .detached
        route = .none
        routes = nil
        versionIndex = 0
        triedEndpoints = EndpointSet()
        triedEjected = false
        rerouted = false
        endpoint = nil
        retries = 0
        upstream = nil
        call = nil
        callStream = 0
        callResponseEnded = false
        callRequestSent = false
        callDeadline = 0
        tlsFailure = nil
        outOfDescriptors = false
        waitingSince = 0
        keepAlive = true
        requestWasHead = false
        upgradeRequested = false
        clientSpeaksHTTP11 = true
        acceptsTrailers = false
        responseOutput = .asReceived
        grpc = false
        deadline = 0
        requestBody = BodyRelay(.none)
        generatedRequestID = false
        forwardedHead.clear()
        forwardedHead.releaseIfEmpty()
        resendHead.clear()
        resendHead.releaseIfEmpty()
        resendAllowed = false
        tunnelTokenHash = nil
        status = 0
        grpcStatus = -1
        timings = Timings()
        upstreamBytes = 0
        clientBytes = 0
        clientBytesBase = 0
    }
}

/// Recycled exchanges of one worker: a steady keep-alive request allocates none.
struct ExchangePool {
    private var free: [Exchange] = []
    /// Free objects kept for the next burst; more go back to malloc.
    private let maxFree: Int
    private let headPool: BufferPool

    init(headPool: BufferPool, maxFree: Int = 256) {
        self.headPool = headPool
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
    }

    mutating func acquire() -> Exchange {
        free.popLast() ?? Exchange(headPool: headPool)
    }

    mutating func release(_ exchange: Exchange) {
        exchange.reset()
        if free.count < maxFree { free.append(exchange) }
    }
}
