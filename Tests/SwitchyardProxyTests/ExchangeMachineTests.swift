import SwitchyardTesting
import Testing
@testable import SwitchyardProxy

@Suite struct ExchangeMachineTests {
    typealias Action = ExchangeMachine.Action

    private func connected(resendable: Bool = false) -> ExchangeMachine {
        var machine = ExchangeMachine()
        machine.routed()
        machine.connected(resendable: resendable)
        return machine
    }

    @Test func aRelayedResponseCompletes() {
        var machine = connected()
        machine.responseHeadQueued(at: 100)
        #expect(machine.responseComplete() == .finish(.completed))
        #expect(machine.state == .finished(.completed))
    }

    @Test func aRejectedRequestFinishesOnceAndIgnoresWhatComesAfter() {
        var machine = ExchangeMachine()
        #expect(machine.reject(.missingToken) == .respond(.missingToken))
        #expect(machine.clientGone() == nil)
        #expect(machine.reject(.unknownVersion) == nil)
        #expect(machine.state == .finished(.rejected(.missingToken)))
    }

    @Test func failedConnectsMoveToTheNextEndpointUntilNoneIsLeft() {
        var machine = ExchangeMachine()
        machine.routed()
        #expect(machine.connectFailed() == .connectNext)
        #expect(machine.upstreamTimedOut(clientBytesSent: 0) == .connectNext)  // connect_ms passed
        #expect(machine.noEndpointLeft() == .respond(.upstreamConnectFailed))
        #expect(machine.state == .finished(.rejected(.upstreamConnectFailed)))
    }

    @Test func noDescriptorForABackendSocketIsA503NotA502() {
        var machine = ExchangeMachine()
        machine.routed()
        #expect(machine.noEndpointLeft(tlsFailed: true, outOfDescriptors: true) == .respond(.tooManyConnections))
        #expect(machine.state == .finished(.rejected(.tooManyConnections)))
    }

    @Test func aReusedConnectionFoundClosedIsResentOnceOnAFreshOne() {
        var machine = connected(resendable: true)
        #expect(machine.mayResend)
        #expect(machine.upstreamFailed(.upstreamClosed, responseBytesReceived: false, clientBytesSent: 0) == .resend)
        machine.connected(resendable: false)  // the fresh connection is not reused
        #expect(!machine.mayResend)
        #expect(machine.upstreamFailed(.upstreamClosed, responseBytesReceived: false, clientBytesSent: 0)
            == .respond(.upstreamClosed))
    }

    @Test func noResendOnceTheBackendAnswered() {
        var machine = connected(resendable: true)
        #expect(machine.upstreamFailed(.upstreamProtocolError, responseBytesReceived: true, clientBytesSent: 0)
            == .respond(.upstreamProtocolError))
    }

    @Test func aResendWithNoConnectionLeftIsA502() {
        var machine = connected(resendable: true)
        #expect(machine.upstreamFailed(.upstreamClosed, responseBytesReceived: false, clientBytesSent: 0) == .resend)
        #expect(machine.noEndpointLeft() == .respond(.upstreamConnectFailed))
    }

    @Test func aBackendFailureBecomesA502UntilTheResponseHeadLeft() {
        var machine = connected()
        machine.responseHeadQueued(at: 500)
        // The head is queued but the client got nothing of it (500 bytes were earlier answers).
        #expect(machine.upstreamFailed(.upstreamProtocolError, responseBytesReceived: true, clientBytesSent: 500)
            == .respond(.upstreamProtocolError))
        #expect(machine.responseHeadAt == 500)

        var started = connected()
        started.responseHeadQueued(at: 500)
        #expect(started.upstreamFailed(.upstreamClosed, responseBytesReceived: true, clientBytesSent: 501)
            == .cut(.upstreamClosed))
        #expect(started.state == .finished(.truncated(.upstreamClosed)))
    }

    @Test func timeoutsAnswer504BeforeTheResponseAndCutAfterIt() {
        var waiting = connected()
        #expect(waiting.upstreamTimedOut(clientBytesSent: 0) == .respond(.upstreamTimeout))

        var streaming = connected()
        streaming.responseHeadQueued(at: 0)
        #expect(streaming.upstreamTimedOut(clientBytesSent: 4096) == .cut(.upstreamTimeout))
    }

    @Test func aCallersDeadlineTriesNoOtherEndpoint() {
        var connecting = ExchangeMachine()
        connecting.routed()
        #expect(connecting.deadlinePassed(clientBytesSent: 0) == .respond(.upstreamTimeout))
        #expect(connecting.state == .finished(.rejected(.upstreamTimeout)))
        var waiting = connected()
        #expect(waiting.deadlinePassed(clientBytesSent: 0) == .respond(.upstreamTimeout))
        var streaming = connected()
        streaming.responseHeadQueued(at: 0)
        #expect(streaming.deadlinePassed(clientBytesSent: 100) == .cut(.upstreamTimeout))
    }

    @Test func aMalformedRequestBodyIsA400OrACut() {
        var early = connected()
        #expect(early.requestBodyMalformed(clientBytesSent: 0) == .respond(.malformedRequest))

        var late = connected()
        late.responseHeadQueued(at: 10)
        #expect(late.requestBodyMalformed(clientBytesSent: 50) == .cut(.malformedRequest))
    }

    @Test func aTunnelEndsTunnelledWhicheverSideCloses() {
        var byBackend = connected()
        byBackend.switchedProtocols()
        #expect(byBackend.responseStarted)
        #expect(byBackend.upstreamFailed(.upstreamClosed, responseBytesReceived: true, clientBytesSent: 9) == .finish(.tunnelled))

        var byClient = connected()
        byClient.switchedProtocols()
        #expect(byClient.clientGone() == .finish(.tunnelled))
        #expect(byClient.requestBodyMalformed(clientBytesSent: 0) == nil)
    }

    @Test func aClientLeavingEndsTheExchangeWhereverItIs() {
        var routing = ExchangeMachine()
        #expect(routing.clientGone() == .finish(.clientGone))
        var waiting = connected()
        #expect(waiting.clientGone() == .finish(.clientGone))
        var streaming = connected()
        streaming.responseHeadQueued(at: 0)
        #expect(streaming.clientGone() == .finish(.clientGone))
    }

    /// Random event sequences, the way a worker could report them: whatever happens, one action
    /// at most finishes the exchange, the final state says how, and a client that leaves at
    /// the end never finishes it twice.
    @Test(arguments: 0..<8) func everyPathFinishesExactlyOnce(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for _ in 0..<2000 {
            var machine = ExchangeMachine()
            var finishes = 0
            var lastFinish: ExchangeOutcome?
            var sent = 0
            func record(_ action: Action?) {
                switch action {
                case .respond(let error)?: finishes += 1; lastFinish = .rejected(error)
                case .cut(let error)?: finishes += 1; lastFinish = .truncated(error)
                case .finish(let outcome)?: finishes += 1; lastFinish = outcome
                case .connectNext?, .resend?, nil: break
                }
            }
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                sent += Int.random(in: 0...100, using: &random)
                switch Int.random(in: 0..<13, using: &random) {
                case 0: record(machine.reject(.invalidToken))
                case 1: machine.routed()
                case 2: machine.connected(resendable: Bool.random(using: &random))
                case 3: record(machine.connectFailed())
                case 4: record(machine.noEndpointLeft())
                case 5: machine.responseHeadQueued(at: sent + Int.random(in: -50...50, using: &random))
                case 6: machine.switchedProtocols()
                case 7: record(machine.responseComplete())
                case 8: record(machine.upstreamFailed(.upstreamClosed, responseBytesReceived: Bool.random(using: &random), clientBytesSent: sent))
                case 9: record(machine.upstreamTimedOut(clientBytesSent: sent))
                case 10: record(machine.requestBodyMalformed(clientBytesSent: sent))
                case 11: record(machine.deadlinePassed(clientBytesSent: sent))
                default: record(machine.clientGone())
                }
                #expect(finishes <= 1)
            }
            record(machine.clientGone())
            #expect(finishes == 1)
            #expect(machine.state == lastFinish.map { .finished($0) })
        }
    }
}

@Suite struct ProxyErrorTests {
    @Test func everyErrorHasADistinctLabelAndAnErrorStatus() {
        let labels = ProxyError.allCases.map { "\($0.label)" }
        #expect(Set(labels).count == labels.count)
        #expect(ProxyError.allCases.allSatisfy { (400...599).contains($0.status) })
        #expect(ProxyError.allCases.count <= ProxyError.Counts.count, "a counter slot per error")
    }

    @Test func clientErrorsCloseTheConnectionExceptAnUnknownVersion() {
        for error in ProxyError.allCases where error.origin == .client {
            #expect(error.closesConnection == (error != .unknownVersion), "\(error)")
        }
        #expect(!ProxyError.upstreamTimeout.closesConnection)
        #expect(ProxyError.upstreamConnectFailed.retryable && !ProxyError.upstreamTimeout.retryable)
    }
}
