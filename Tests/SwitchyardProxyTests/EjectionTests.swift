import Testing
@testable import SwitchyardProxy

@Suite struct EjectionTests {
    @Test func backoffDoublesFromOneSecondToThirty() {
        var ejection = Ejection()
        #expect(!ejection.isEjected(at: 0))
        var now: UInt64 = 10_000
        var backoffs: [UInt64] = []
        for _ in 0..<8 {
            backoffs.append(ejection.connectFailed(at: now))
            #expect(ejection.isEjected(at: now + backoffs.last! - 1))
            #expect(!ejection.isEjected(at: now + backoffs.last!))
            now += backoffs.last!
        }
        #expect(backoffs == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
    }

    @Test func aSuccessfulConnectBringsItBackAtOnce() {
        var ejection = Ejection()
        _ = ejection.connectFailed(at: 0)
        _ = ejection.connectFailed(at: 1000)
        ejection.connected()
        #expect(!ejection.isEjected(at: 1001))
        #expect(ejection.connectFailed(at: 2000) == 1000, "the backoff starts over")
    }
}
