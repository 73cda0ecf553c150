/// libFuzzer target: one client connection end to end, as the worker drives it, without
/// sockets. Hostile client bytes go through `H1ServerMachine` (pipelining gate, parse, read
/// gating, close and linger), each request through an `ExchangeMachine` and a request
/// `BodyRelay`; hostile backend bytes through `H1ClientMachine` and a response `BodyRelay`.
///
/// Input: byte 0 sets the client's arrival size, byte 1 the backend's; the rest is the
/// client's stream, then (after the first `FF FE`) the backend's. Without a marker the
/// backend answers every request with a small keep-alive response.
///
/// It must never trap or stall, buffered client bytes stay bounded by the read gating, every
/// exchange that starts finishes exactly once, and a proxy-made answer never replaces a
/// response head that already left.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzH1Exchange(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 2 else { return 0 }
    let data = Array(UnsafeBufferPointer(start: bytes + 2, count: size - 2))
    var client = data[...]
    var backend: ArraySlice<UInt8>?
    if let marker = data.indices.dropLast().first(where: { data[$0] == 0xFF && data[$0 + 1] == 0xFE }) {
        client = data[..<marker]
        backend = data[(marker + 2)...]
    }
    var connection = Connection(clientArrival: 1 + Int(bytes[0] % 64), backendArrival: 1 + Int(bytes[1] % 64))
    connection.run(client: client, backend: backend)
    return 0
}

struct Connection {
    static let limits = HeadLimits(maxHeadBytes: 1024, maxHeaders: 16, maxURIBytes: 256)
    static let highWaterMark = 512
    static let cannedResponse = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)

    struct Backend {
        var machine = ExchangeMachine()
        var requestBody = BodyRelay(.none)
        var keepAlive = true
        var upstream: H1ClientMachine?
        var responseBody = BodyRelay(.none)
    }

    let clientArrival: Int
    let backendArrival: Int
    var server = H1ServerMachine(limits: limits, timeouts: .init(idleMs: 1000, requestHeadMs: 100), now: 0)
    let input = ByteBuffer(capacity: 256)
    let output = ByteBuffer(capacity: 256)
    let backendInput = ByteBuffer(capacity: 256)
    let scratch = ByteBuffer(capacity: 256)
    var exchange: Backend?
    var idleUpstream: H1ClientMachine?
    var clientSent = 0
    var started = 0
    var finished = 0
    var closed = false

    init(clientArrival: Int, backendArrival: Int) {
        self.clientArrival = clientArrival
        self.backendArrival = backendArrival
    }

    mutating func run(client: ArraySlice<UInt8>, backend: ArraySlice<UInt8>?) {
        var client = client
        var backendStream = backend ?? []
        let canned = backend == nil
        var steps = 0
        let budget = (client.count + (backend?.count ?? 0) + 64) * 16
        while !closed {
            steps += 1
            precondition(steps < budget, "no progress: \(server.state), exchange \(String(describing: exchange?.machine.state))")
            var progressed = flushOutput()
            if closed { break }
            if server.mayParse(inputEmpty: input.isEmpty, outputEmpty: output.isEmpty) {
                progressed = parse() || progressed
                if closed { break }
            }
            if exchange != nil {
                if canned && exchange?.upstream?.state == .awaitingHead && backendStream.isEmpty && backendInput.isEmpty {
                    backendStream = Self.cannedResponse[...]
                }
                progressed = relayRequestBody() || progressed
                if closed { break }
                progressed = readBackend(&backendStream) || progressed
                if closed { break }
            }
            let body = exchange?.requestBody
            let mayRead = server.mayRead(
                inputBytes: input.readableCount, outputEmpty: output.isEmpty, bodyBuffered: body?.buffered ?? 0,
                bodyComplete: body?.complete ?? true, maxHeadBytes: Self.limits.maxHeadBytes, highWaterMark: Self.highWaterMark)
            if mayRead, !client.isEmpty {
                let chunk = client.prefix(clientArrival)
                client = client.dropFirst(chunk.count)
                chunk.withUnsafeBytes { input.append($0) }
                if server.state == .lingering { input.clear() }
                progressed = true
            }
            precondition(input.readableCount <= Self.limits.maxHeadBytes + Self.highWaterMark + clientArrival + 2,
                         "client bytes piled up: \(input.readableCount) in \(server.state)")
            if !progressed {
                // Nothing moves any more: the client has sent everything it will and leaves.
                if exchange != nil { act(exchange?.machine.clientGone()) }
                closed = true
            }
        }
        precondition(finished == started, "\(started) exchanges started, \(finished) finished")
    }

    /// The client reads everything; then the response may complete, or the connection close.
    private mutating func flushOutput() -> Bool {
        var moved = false
        if var current = exchange, current.upstream?.state == .streamingBody || current.upstream?.state == .tunnel {
            let sent = Self.send(&current.responseBody, head: output, source: backendInput)
            clientSent += sent
            moved = sent > 0
            exchange = current
        }
        if !output.isEmpty {
            clientSent += output.readableCount
            output.clear()
            moved = true
        }
        if server.state == .proxying {
            if var current = exchange, current.upstream?.state == .streamingBody, current.responseBody.isFinished {
                if var upstream = current.upstream {
                    let reusable = upstream.release(
                        requestFinished: current.requestBody.isFinished, responseFinished: true,
                        nothingAfter: backendInput.isEmpty, peerOpen: true, poolOpen: true)
                    idleUpstream = reusable ? upstream : nil
                    current.upstream = nil
                }
                exchange = current
                act(exchange?.machine.responseComplete())
                return true
            }
            return moved
        }
        switch server.outputDrained(inputBuffered: !input.isEmpty, mayBeUnread: false, peerHungUp: false, draining: false, now: 0) {
        case .none: break
        case .linger: input.clear()
        case .close: closed = true
        }
        return moved
    }

    private mutating func parse() -> Bool {
        let step = server.parseRequest(input.readableBytes, now: 0)
        if case .emptyLines(let count) = step {
            input.consume(count)
            return true
        }
        if exchange == nil && server.headStarted {
            exchange = Backend()
            started += 1
        }
        switch step {
        case .needMore, .emptyLines:
            return false
        case .error:
            act(exchange?.machine.reject(.malformedRequest))
        case .head(let length):
            input.consume(length)
            let request = server.request
            exchange?.requestBody = BodyRelay(request.framing)
            exchange?.keepAlive = request.keepAlive
            exchange?.machine.routed()
            var upstream = idleUpstream ?? H1ClientMachine(connected: true, limits: Self.limits)
            upstream.assigned()
            idleUpstream = nil
            exchange?.upstream = upstream
            exchange?.machine.connected(resendable: false)
            server.proxying()
        }
        return true
    }

    /// Decodes the request body and sends what it releases to the backend (which takes all).
    private mutating func relayRequestBody() -> Bool {
        guard var current = exchange, server.state == .proxying || server.state == .tunnel else { return false }
        if current.requestBody.decode(input) != nil {
            exchange = current
            act(exchange?.machine.requestBodyMalformed(clientBytesSent: clientSent))
            return true
        }
        let moved = Self.send(&current.requestBody, head: scratch, source: input) > 0
        exchange = current
        return moved
    }

    /// Sends what `body` releases to a peer that takes everything, as `Relay.pump` does;
    /// returns the bytes that went (framing included).
    private static func send(_ body: inout BodyRelay, head: ByteBuffer, source: ByteBuffer) -> Int {
        var sent = 0
        while true {
            let count = body.prepare(head: head, source: source)
            if head.isEmpty && count == 0 { break }
            sent += head.readableCount + count
            head.clear()
            source.consume(count)
            body.sent(count)
            if !body.mayHaveMore { break }
        }
        return sent
    }

    private mutating func readBackend(_ stream: inout ArraySlice<UInt8>) -> Bool {
        guard var current = exchange, var upstream = current.upstream else { return false }
        var moved = false
        if !stream.isEmpty && upstream.mayRead(
            inputBytes: backendInput.readableCount, buffered: current.responseBody.buffered,
            bodyComplete: current.responseBody.complete, highWaterMark: Self.highWaterMark) {
            let chunk = stream.prefix(backendArrival)
            stream = stream.dropFirst(chunk.count)
            chunk.withUnsafeBytes { backendInput.append($0) }
            moved = true
        }
        defer {
            if exchange != nil, !closed {
                current.upstream = upstream
                exchange = current
            }
        }
        switch upstream.state {
        case .awaitingHead:
            let step = upstream.parseHead(
                backendInput.readableBytes, requestWasHead: server.request.methodKind == .head,
                upgradeRequested: server.request.upgrade, clientSpeaksHTTP11: server.request.version == .http11)
            switch step {
            case .needMore:
                if stream.isEmpty && !moved {
                    exchange = current
                    fail(.upstreamClosed, received: !backendInput.isEmpty)
                    return true
                }
            case .interim(let length, let forward):
                if forward { output.append(UnsafeRawBufferPointer(rebasing: backendInput.readableBytes[0..<length])) }
                backendInput.consume(length)
                moved = true
            case .final(let length):
                current.machine.responseHeadQueued(at: clientSent + output.readableCount)
                output.append(UnsafeRawBufferPointer(rebasing: backendInput.readableBytes[0..<length]))
                backendInput.consume(length)
                current.responseBody = BodyRelay(upstream.response.framing, keepTrailers: server.request.acceptsTrailers)
                moved = true
            case .switchingProtocols(let length):
                current.machine.switchedProtocols()
                server.tunnelled(now: 0)
                output.append(UnsafeRawBufferPointer(rebasing: backendInput.readableBytes[0..<length]))
                backendInput.consume(length)
                current.requestBody = BodyRelay(.untilClose)
                current.responseBody = BodyRelay(.untilClose)
                moved = true
            case .fault(let fault):
                exchange = current
                fail(fault.error, received: true)
                return true
            }
        case .streamingBody, .tunnel:
            if current.responseBody.decode(backendInput) != nil {
                exchange = current
                fail(.upstreamProtocolError, received: true)
                return true
            }
            if stream.isEmpty && !moved && !current.responseBody.complete && current.responseBody.buffered == 0 {
                if upstream.response.framing == .untilClose && upstream.state == .streamingBody {
                    current.responseBody.endOfInput()
                    moved = true
                } else {
                    exchange = current
                    fail(.upstreamClosed, received: true)
                    return true
                }
            }
        case .connecting, .idle:
            break
        }
        return moved
    }

    private mutating func fail(_ error: ProxyError, received: Bool) {
        act(exchange?.machine.upstreamFailed(error, responseBytesReceived: received, clientBytesSent: clientSent))
    }

    /// Runs an exchange machine action as `Worker.perform` does (resend and next endpoint
    /// have no second backend here: they end in `noEndpointLeft`).
    private mutating func act(_ first: ExchangeMachine.Action?) {
        var next = first
        while let action = next {
            next = nil
            switch action {
            case .connectNext, .resend:
                next = exchange?.machine.noEndpointLeft()
            case .respond:
                guard let current = exchange else { return }
                if let headAt = current.machine.responseHeadAt {
                    precondition(headAt >= clientSent, "a proxy-made answer would replace a response head that left")
                    output.truncateReadable(to: headAt - clientSent)
                }
                let keepAlive = current.keepAlive && current.requestBody.complete && server.state == .proxying
                output.append("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n" as StaticString)
                if keepAlive { input.consume(current.requestBody.buffered) }
                endExchange()
                server.answered(keepAlive: keepAlive, now: 0)
            case .cut, .finish(.tunnelled), .finish(.clientGone):
                endExchange()
                closed = true
            case .finish(.completed):
                guard let current = exchange else { return }
                let keepAlive = current.keepAlive && current.requestBody.complete
                if keepAlive { input.consume(current.requestBody.buffered) }
                endExchange()
                server.answered(keepAlive: keepAlive, now: 0)
            case .finish:
                preconditionFailure("finish with \(action)")
            }
        }
    }

    private mutating func endExchange() {
        precondition(exchange?.machine.isFinished == true)
        finished += 1
        exchange = nil
        backendInput.clear()
    }
}
