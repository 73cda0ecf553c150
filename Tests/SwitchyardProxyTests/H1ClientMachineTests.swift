import SwitchyardHTTP
import Testing
@testable import SwitchyardProxy

@Suite struct H1ClientMachineTests {
    typealias Step = H1ClientMachine.HeadStep

    private func parse(_ machine: inout H1ClientMachine, _ text: String, upgrade: Bool = false, http11: Bool = true) -> Step {
        Array(text.utf8).withUnsafeBytes {
            machine.parseHead($0, requestWasHead: false, upgradeRequested: upgrade, clientSpeaksHTTP11: http11)
        }
    }

    private func release(_ machine: inout H1ClientMachine) -> Bool {
        machine.release(requestFinished: true, responseFinished: true, nothingAfter: true, peerOpen: true, poolOpen: true)
    }

    private func streaming(_ head: String = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") -> H1ClientMachine {
        var machine = H1ClientMachine(connected: true, limits: HeadLimits())
        _ = parse(&machine, head)
        return machine
    }

    @Test func aFinalHeadStartsTheBodyWhereverTheBytesSplit() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        for split in 1..<head.utf8.count {
            var machine = H1ClientMachine(connected: true, limits: HeadLimits())
            #expect(parse(&machine, String(decoding: head.utf8.prefix(split), as: UTF8.self)) == .needMore)
            #expect(parse(&machine, head + "ok") == .final(length: head.utf8.count))
            #expect(machine.state == .streamingBody)
            #expect(machine.response.framing == .contentLength(2))
        }
    }

    @Test func nothingIsParsedBeforeTheConnectCompletes() {
        var machine = H1ClientMachine(connected: false, limits: HeadLimits())
        #expect(parse(&machine, "HTTP/1.1 200 OK\r\n\r\n") == .needMore)
        machine.connected()
        #expect(machine.state == .awaitingHead)
    }

    @Test func interimResponsesPassToHTTP11ClientsOnlyAndAreCapped() {
        var machine = H1ClientMachine(connected: true, limits: HeadLimits())
        let early = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        #expect(parse(&machine, early) == .interim(length: early.utf8.count, forward: true))
        #expect(parse(&machine, early, http11: false) == .interim(length: early.utf8.count, forward: false))
        for _ in 3...H1ClientMachine.maxInterimResponses { _ = parse(&machine, early) }
        #expect(parse(&machine, early) == .fault(.tooManyInterimResponses))
    }

    @Test func interimBytesAreCappedByTheHeadLimit() {
        var machine = H1ClientMachine(connected: true, limits: HeadLimits(maxHeadBytes: 100))
        let interim = "HTTP/1.1 100 Continue\r\nX: \(String(repeating: "a", count: 40))\r\n\r\n"
        #expect(parse(&machine, interim) == .interim(length: interim.utf8.count, forward: true))
        #expect(parse(&machine, interim) == .fault(.tooManyInterimResponses))
    }

    @Test func switchingProtocolsOnlyForAnUpgradeRequest() {
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        var unasked = H1ClientMachine(connected: true, limits: HeadLimits())
        #expect(parse(&unasked, head) == .fault(.unrequestedSwitch))
        var asked = H1ClientMachine(connected: true, limits: HeadLimits())
        #expect(parse(&asked, head, upgrade: true) == .switchingProtocols(length: head.utf8.count))
        #expect(asked.state == .tunnel)
    }

    @Test func aMalformedHeadIsAFault() {
        var machine = H1ClientMachine(connected: true, limits: HeadLimits())
        #expect(parse(&machine, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == .fault(.malformedHead))
    }

    @Test func readingStopsForBackpressureTheHeadLimitAndAfterTheBody() {
        let machine = streaming()
        #expect(machine.mayRead(inputBytes: 0, buffered: 10, bodyComplete: false, highWaterMark: 100))
        #expect(!machine.mayRead(inputBytes: 0, buffered: 100, bodyComplete: false, highWaterMark: 100))
        #expect(!machine.mayRead(inputBytes: 0, buffered: 0, bodyComplete: true, highWaterMark: 100))
        let waiting = H1ClientMachine(connected: true, limits: HeadLimits(maxHeadBytes: 50))
        #expect(waiting.mayRead(inputBytes: 50, buffered: 0, bodyComplete: false, highWaterMark: 100))
        #expect(!waiting.mayRead(inputBytes: 51, buffered: 0, bodyComplete: false, highWaterMark: 100))
    }

    @Test func onlyACleanExchangeReturnsTheConnectionToThePool() {
        let clean = (requestFinished: true, responseFinished: true, nothingAfter: true, peerOpen: true, poolOpen: true)
        var machine = streaming()
        let released = machine.release(requestFinished: clean.0, responseFinished: clean.1, nothingAfter: clean.2, peerOpen: clean.3, poolOpen: clean.4)
        #expect(released)
        #expect(machine.state == .idle && machine.reused)
        machine.assigned()
        #expect(machine.state == .awaitingHead)

        for spoiled in 0..<5 {
            var flags = [true, true, true, true, true]
            flags[spoiled] = false
            var machine = streaming()
            let released = machine.release(requestFinished: flags[0], responseFinished: flags[1], nothingAfter: flags[2], peerOpen: flags[3], poolOpen: flags[4])
            #expect(!released, "condition \(spoiled) alone keeps the connection out of the pool")
        }
        var closing = streaming("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
        #expect(!release(&closing))
        var untilClose = streaming("HTTP/1.1 200 OK\r\n\r\n")
        #expect(!release(&untilClose))
    }

    @Test func interimCountsStartOverForTheNextRequest() {
        var machine = H1ClientMachine(connected: true, limits: HeadLimits())
        let early = "HTTP/1.1 103 Early Hints\r\n\r\n"
        for _ in 0..<H1ClientMachine.maxInterimResponses { _ = parse(&machine, early) }
        _ = parse(&machine, "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(release(&machine))
        machine.assigned()
        #expect(parse(&machine, early) == .interim(length: early.utf8.count, forward: true))
    }
}
