import SwitchyardHTTP

/// The proxy's side of an HTTP/1.1 client connection: when to read and parse, how the
/// connection goes on after each exchange, and its deadline. Bytes and times go in (the
/// caller's clock, in ms), decisions come out; no socket or exchange inside.
///
///     readingHead ──head──▶ proxying ──answered, keep-alive──▶ readingHead
///          │                   │  └──101 Switching Protocols──▶ tunnel
///          │                   └──answered, closing──▶ closing ──output out──▶ lingering ──▶ closed
///          │                      (while draining: answers say Connection: close; an idle
///          │                       connection closes after drainGraceMs)
///          └──bad request, 401, 408──▶ closing
///
/// Requests on one connection are served one at a time: the next head is parsed only once the
/// previous answer has left (`mayParse`), so a client pipelining without reading holds at most
/// one answer in the proxy, and nothing is read meanwhile (`mayRead`).
struct H1ServerMachine {
    enum State: Equatable {
        /// Waiting for (the rest of) a request head.
        case readingHead
        /// A request is being relayed to a backend and its response back.
        case proxying
        /// After 101: bytes flow both ways unchanged.
        case tunnel
        /// The last answer is being written; the connection closes afterwards.
        case closing
        /// Write side shut; unread client bytes are discarded briefly so the kernel does not
        /// answer them with a reset that would destroy the answer in flight.
        case lingering
    }

    struct Timeouts {
        var idleMs: UInt64
        var requestHeadMs: UInt64
        /// How long unread bytes are discarded after the last answer.
        var lingerMs: UInt64 = 1000
        /// How long an idle keep-alive connection stays open once the proxy drains.
        var drainGraceMs: UInt64 = 1000

        init(idleMs: UInt64, requestHeadMs: UInt64) {
            self.idleMs = idleMs
            self.requestHeadMs = requestHeadMs
        }
    }

    /// What the bytes at the front of the input are.
    enum RequestStep: Equatable {
        case needMore
        /// Empty lines before a request (RFC 9112 §2.2 allows them): consume and go on.
        case emptyLines(Int)
        /// A complete head of `length` bytes, parsed into `request`.
        case head(length: Int)
        case error(HTTPParseError)
    }

    /// What to do once the output has left.
    enum AfterOutput: Equatable {
        case none
        /// Shut the write side and discard what the client still sends, until `deadline`.
        case linger
        case close
    }

    private(set) var state = State.readingHead
    /// The request head parsed last; its ranges point into the input buffer.
    private(set) var request = RequestHead()
    /// When the connection times out (ms); 0 while a backend's deadlines govern it.
    private(set) var deadline: UInt64
    /// Part of a request head has arrived: the head timeout runs.
    private(set) var headStarted = false
    private var parser: HeadParser
    private let timeouts: Timeouts

    /// `firstWaitMs`: how long the first request may take to begin, when not `idle_ms` (a TLS
    /// connection's handshake timeout).
    init(limits: HeadLimits, timeouts: Timeouts, now: UInt64, firstWaitMs: UInt64? = nil) {
        parser = HeadParser(limits: limits)
        self.timeouts = timeouts
        deadline = now + (firstWaitMs ?? timeouts.idleMs)
    }

    /// An idle keep-alive connection: between requests, nothing of the next one read.
    var isIdle: Bool { state == .readingHead && !headStarted }

    /// The proxy began to drain: an idle connection gets `drainGraceMs` more (not its whole
    /// idle timeout) for a request already on its way, which is answered with `Connection:
    /// close`; closing at once would reset a request the client sent at that moment.
    mutating func draining(now: UInt64) {
        guard isIdle else { return }
        deadline = min(deadline, now + timeouts.drainGraceMs)
    }

    /// Whether to parse the next request now: its predecessor's answer must have left.
    func mayParse(inputEmpty: Bool, outputEmpty: Bool) -> Bool {
        state == .readingHead && outputEmpty && !inputEmpty
    }

    /// Whether to read more from the client; `bodyBuffered` and `bodyComplete` describe the
    /// current request body (none: 0 and true).
    func mayRead(inputBytes: Int, outputEmpty: Bool, bodyBuffered: Int, bodyComplete: Bool, maxHeadBytes: Int, highWaterMark: Int) -> Bool {
        switch state {
        case .readingHead:
            // The previous answer must leave before more requests are read.
            return outputEmpty && inputBytes <= maxHeadBytes
        case .proxying:
            // While the request body flows, unsent bytes are bounded by the high-water mark;
            // after it, a pipelined request may wait (and a close is noticed).
            return bodyComplete ? inputBytes <= maxHeadBytes : bodyBuffered < highWaterMark
        case .tunnel:
            return bodyBuffered < highWaterMark
        case .closing:
            return false
        case .lingering:
            return true
        }
    }

    /// Reads the request head at the front of `input`.
    mutating func parseRequest(_ input: UnsafeRawBufferPointer, now: UInt64) -> RequestStep {
        guard state == .readingHead, !input.isEmpty else { return .needMore }
        let skip = HeadParser.leadingEmptyLines(input)
        if skip > 0 { return .emptyLines(skip) }
        if !headStarted {
            headStarted = true
            deadline = now + timeouts.requestHeadMs
        }
        switch parser.parseRequest(input, into: &request) {
        case .needMore: return .needMore
        case .error(let error): return .error(error)
        case .complete(let length): return .head(length: length)
        }
    }

    /// The parsed request goes to a backend: the backend's deadlines govern it now.
    mutating func proxying() {
        guard state == .readingHead else { return }
        state = .proxying
        deadline = 0
    }

    /// The backend switched protocols: an idle tunnel times out after `idleMs`.
    mutating func tunnelled(now: UInt64) {
        state = .tunnel
        deadline = now + timeouts.idleMs
    }

    /// Bytes moved through the tunnel.
    mutating func tunnelActivity(now: UInt64) {
        if state == .tunnel { deadline = now + timeouts.idleMs }
    }

    /// The exchange was answered (its answer may still be leaving): the connection reads the
    /// next request, or closes once the answer is out.
    mutating func answered(keepAlive: Bool, now: UInt64) {
        guard state == .readingHead || state == .proxying else { return }
        state = keepAlive ? .readingHead : .closing
        headStarted = false
        parser.reset()
        deadline = now + timeouts.idleMs
    }

    /// The output is empty. `inputBuffered`: client bytes read but not consumed;
    /// `mayBeUnread`: the socket may hold more.
    mutating func outputDrained(inputBuffered: Bool, mayBeUnread: Bool, peerHungUp: Bool, draining: Bool, now: UInt64) -> AfterOutput {
        switch state {
        case .readingHead where draining:
            // An answer that went out as keep-alive before the drain began: the client may be
            // sending its next request already, so the connection stays for the grace.
            self.draining(now: now)
            return .none
        case .closing:
            return linger(inputPending: inputBuffered || mayBeUnread, peerHungUp: peerHungUp, now: now)
        default:
            return .none
        }
    }

    /// After the last answer: close at once if the client sent nothing more; otherwise stop
    /// sending and read (discarding) what it still sends for a moment, so that closing with
    /// unread bytes does not reset the connection under the answer.
    private mutating func linger(inputPending: Bool, peerHungUp: Bool, now: UInt64) -> AfterOutput {
        if !inputPending || peerHungUp { return .close }
        state = .lingering
        deadline = now + timeouts.lingerMs
        return .linger
    }

    /// The deadline passed: a head that started is answered 408 (true); anything else closes.
    func timeoutAnswers408() -> Bool {
        state == .readingHead && headStarted
    }
}
