import Testing
@testable import SwitchyardTLS

@Suite struct TicketKeysTests {
    @Test func theCurrentKeyRotatesEveryTwelveHoursAndThePreviousOneStillOpens() {
        let keys = TicketKeys(nowMs: 1000)
        let first = keys.currentName
        #expect(first.count == 16)
        #expect(first.withUnsafeBytes { keys.lookup($0) } == 1)
        #expect(keys.rotateIfDue(nowMs: 1000 + TicketKeys.rotationMs - 1) == false)
        #expect(keys.rotateIfDue(nowMs: 1000 + TicketKeys.rotationMs))
        let second = keys.currentName
        #expect(second != first)
        #expect(second.withUnsafeBytes { keys.lookup($0) } == 1)
        #expect(first.withUnsafeBytes { keys.lookup($0) } == 2, "the previous key opens tickets and asks for a new one")
        #expect(keys.rotateIfDue(nowMs: 1000 + 2 * TicketKeys.rotationMs))
        #expect(first.withUnsafeBytes { keys.lookup($0) } == 0, "two rotations later it is gone: a full handshake")
        #expect(second.withUnsafeBytes { keys.lookup($0) } == 2)
        #expect([UInt8](repeating: 0, count: 16).withUnsafeBytes { keys.lookup($0) } == 0)
    }
}
