import SwitchyardHTTP
import SwitchyardTesting
import Testing
@testable import SwitchyardProxy

@Suite struct H1ServerMachineTests {
    typealias Step = H1ServerMachine.RequestStep
    let timeouts = H1ServerMachine.Timeouts(idleMs: 60_000, requestHeadMs: 10_000)

    private func machine(_ clock: ManualClock, limits: HeadLimits = HeadLimits()) -> H1ServerMachine {
        H1ServerMachine(limits: limits, timeouts: timeouts, now: clock.now)
    }

    private func parse(_ machine: inout H1ServerMachine, _ text: String, at clock: ManualClock) -> Step {
        Array(text.utf8).withUnsafeBytes { machine.parseRequest($0, now: clock.now) }
    }

    private func mayRead(_ machine: H1ServerMachine, input: Int = 0, outputEmpty: Bool = true, buffered: Int = 0, complete: Bool = true) -> Bool {
        machine.mayRead(inputBytes: input, outputEmpty: outputEmpty, bodyBuffered: buffered, bodyComplete: complete,
                        maxHeadBytes: 1000, highWaterMark: 100)
    }

    @Test func anIdleConnectionTimesOutAfterIdleAndAStartedHeadAfterTheHeadTimeout() {
        var clock = ManualClock()
        var server = machine(clock)
        #expect(server.deadline == clock.now + 60_000)
        #expect(server.isIdle && !server.timeoutAnswers408())
        clock.advance(by: 5)
        #expect(parse(&server, "GET / HTTP/1.1\r\nHo", at: clock) == .needMore)
        #expect(server.deadline == clock.now + 10_000)
        #expect(server.timeoutAnswers408() && !server.isIdle)
        clock.advance(by: 5)
        _ = parse(&server, "GET / HTTP/1.1\r\nHost: a\r", at: clock)
        #expect(server.deadline == clock.now - 5 + 10_000, "more bytes of the same head do not extend its deadline")
    }

    @Test func emptyLinesBeforeARequestAreSkipped() {
        var server = machine(ManualClock())
        #expect(parse(&server, "\r\n\r\nGET / HTTP/1.1\r\n\r\n", at: ManualClock()) == .emptyLines(4))
        #expect(!server.headStarted)
    }

    @Test func aCompleteHeadIsParsedAndABadOneIsAnError() {
        var server = machine(ManualClock())
        let head = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        #expect(parse(&server, head + "abc", at: ManualClock()) == .head(length: head.utf8.count))
        #expect(server.request.framing == .contentLength(3))
        var bad = machine(ManualClock())
        if case .error = parse(&bad, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", at: ManualClock()) {} else {
            Issue.record("a repeated Host is refused")
        }
    }

    @Test func pipelinedRequestsWaitForThePreviousAnswerToLeave() {
        var clock = ManualClock()
        var server = machine(clock)
        #expect(server.mayParse(inputEmpty: false, outputEmpty: true))
        _ = parse(&server, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", at: clock)
        server.proxying()
        #expect(!server.mayParse(inputEmpty: false, outputEmpty: true), "one request at a time")
        #expect(server.deadline == 0, "the backend's deadlines govern a request in flight")
        clock.advance(by: 100)
        server.answered(keepAlive: true, now: clock.now)
        #expect(server.state == .readingHead && server.deadline == clock.now + 60_000)
        #expect(!server.mayParse(inputEmpty: false, outputEmpty: false), "the answer has not left yet")
        #expect(!mayRead(server, outputEmpty: false), "nor is more read meanwhile")
        #expect(server.mayParse(inputEmpty: false, outputEmpty: true))
    }

    @Test func readingFollowsBackpressureInEveryState() {
        var server = machine(ManualClock())
        #expect(mayRead(server, input: 1000))
        #expect(!mayRead(server, input: 1001), "no more than one head's worth waits unparsed")
        _ = parse(&server, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\n", at: ManualClock())
        server.proxying()
        #expect(mayRead(server, buffered: 99, complete: false))
        #expect(!mayRead(server, buffered: 100, complete: false), "the body waits at the high-water mark")
        #expect(mayRead(server, input: 1000, complete: true))
        #expect(!mayRead(server, input: 1001, complete: true))
        server.tunnelled(now: 0)
        #expect(mayRead(server, buffered: 99) && !mayRead(server, buffered: 100))
    }

    @Test func aClosingAnswerEndsInACloseOrALinger() {
        var clock = ManualClock()
        var quiet = machine(clock)
        quiet.answered(keepAlive: false, now: clock.now)
        #expect(quiet.state == .closing && !mayRead(quiet))
        #expect(quiet.outputDrained(inputBuffered: false, mayBeUnread: false, peerHungUp: false, draining: false, now: clock.now) == .close)

        var talking = machine(clock)
        talking.answered(keepAlive: false, now: clock.now)
        clock.advance(by: 7)
        #expect(talking.outputDrained(inputBuffered: true, mayBeUnread: false, peerHungUp: false, draining: false, now: clock.now) == .linger)
        #expect(talking.state == .lingering && talking.deadline == clock.now + 1000 && mayRead(talking))

        var gone = machine(clock)
        gone.answered(keepAlive: false, now: clock.now)
        #expect(gone.outputDrained(inputBuffered: true, mayBeUnread: true, peerHungUp: true, draining: false, now: clock.now) == .close)
    }

    @Test func drainingGivesAKeepAliveAnswerTheGraceNotAClose() {
        var server = machine(ManualClock())
        server.answered(keepAlive: true, now: 0)
        #expect(server.outputDrained(inputBuffered: false, mayBeUnread: false, peerHungUp: false, draining: false, now: 0) == .none)
        #expect(server.deadline == 60_000)
        #expect(server.outputDrained(inputBuffered: false, mayBeUnread: false, peerHungUp: false, draining: true, now: 0) == .none,
                "the client may be sending its next request: it is answered with Connection: close")
        #expect(server.deadline == 1000)
        var pipelining = machine(ManualClock())
        #expect(pipelining.outputDrained(inputBuffered: true, mayBeUnread: false, peerHungUp: false, draining: true, now: 0) == .none,
                "a request already read is still served (and its answer closes)")
    }

    @Test func aDrainGivesAnIdleConnectionAShortGraceAndLeavesABusyOneAlone() {
        var clock = ManualClock()
        var idle = machine(clock)
        clock.advance(by: 10)
        idle.draining(now: clock.now)
        #expect(idle.deadline == clock.now + 1000, "not its whole idle timeout")
        idle.draining(now: clock.now + 500)
        #expect(idle.deadline == clock.now + 1000, "a second drain does not extend it")
        var started = machine(clock)
        _ = parse(&started, "GET / HT", at: clock)
        let headDeadline = started.deadline
        started.draining(now: clock.now)
        #expect(started.deadline == headDeadline, "a request on its way keeps its head timeout")
        var busy = machine(clock)
        _ = parse(&busy, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", at: clock)
        busy.proxying()
        busy.draining(now: clock.now)
        #expect(busy.deadline == 0, "the backend's deadlines still govern it")
    }

    @Test func aTunnelStaysOpenWhileBytesMove() {
        var clock = ManualClock()
        var server = machine(clock)
        _ = parse(&server, "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", at: clock)
        server.proxying()
        server.tunnelled(now: clock.now)
        clock.advance(by: 30_000)
        server.tunnelActivity(now: clock.now)
        #expect(server.deadline == clock.now + 60_000)
        #expect(!server.timeoutAnswers408())
        #expect(server.outputDrained(inputBuffered: false, mayBeUnread: false, peerHungUp: false, draining: true, now: clock.now) == .none)
    }
}
