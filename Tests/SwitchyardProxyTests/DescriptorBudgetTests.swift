import Testing
@testable import SwitchyardProxy

@Suite struct DescriptorBudgetTests {
    final class Stream {
        let id: Int
        init(_ id: Int) { self.id = id }
    }

    @Test func keepsOneBackendSocketForEachHTTP1Client() {
        var budget = DescriptorBudget<Stream>(limit: 10)
        budget.clients = 3
        budget.http2Clients = 1
        // 3 clients + 2 kept for the HTTP/1.1 ones: 5 in use, 5 left for streams.
        budget.backendSockets = 4
        #expect(budget.backendSocketFree)
        budget.backendSockets = 5
        #expect(!budget.backendSocketFree)
        // A client that turns HTTP/2 gives back the socket kept for it.
        budget.http2Clients = 2
        #expect(budget.backendSocketFree)
        budget.lingering = 1
        #expect(!budget.backendSocketFree)
    }

    @Test func lingeringIsBounded() {
        var budget = DescriptorBudget<Stream>(limit: 100_000)
        budget.lingering = DescriptorBudget<Stream>.maxLingering - 1
        #expect(budget.mayLinger)
        budget.lingering += 1
        #expect(!budget.mayLinger)
    }

    @Test func streamsWaitFirstComeFirstServed() {
        var budget = DescriptorBudget<Stream>(limit: 1)
        #expect(budget.oldest == nil)
        var queued = (0..<3).map { budget.wait(Stream($0)) }
        #expect(queued == [true, true, true])
        #expect(budget.waiting == 3)
        var served: [Int] = []
        while let oldest = budget.oldest {
            served.append(oldest.id)
            budget.removeOldest()
            if served.count == 2 { queued.append(budget.wait(Stream(3))) }
        }
        #expect(queued.last == true)
        #expect(served == [0, 1, 2, 3])
        #expect(budget.waiting == 0)
        budget.removeOldest()  // nothing left: no change
        #expect(budget.waiting == 0 && budget.oldest == nil)
    }

    @Test func theQueueIsBoundedAndTakesAgainOnceServed() {
        var budget = DescriptorBudget<Stream>(limit: 1)
        let limit = DescriptorBudget<Stream>.maxWaiters
        let queued = (0...limit).map { budget.wait(Stream($0)) }
        #expect(queued.dropLast().allSatisfy { $0 } && queued.last == false)
        #expect(budget.waiting == limit)
        budget.removeOldest()
        let again = budget.wait(Stream(limit))
        #expect(again)
        #expect(budget.oldest?.id == 1 && budget.waiting == limit)
    }

    @Test func aShortageIsReportedAtMostOnceASecond() {
        var budget = DescriptorBudget<Stream>(limit: 1)
        let reported = [5_000, 5_999, 6_000, 6_500, 7_001].map { budget.mayReportShortage(now: $0) }
        #expect(reported == [true, false, true, false, true])
    }
}
