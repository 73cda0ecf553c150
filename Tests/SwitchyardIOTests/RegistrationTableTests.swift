import Testing
import SwitchyardIO

@Suite struct RegistrationTableTests {
    @Test func aTokenFindsItsEntryUntilRemoved() {
        var table = RegistrationTable<String>(capacity: 4)
        let a = table.insert("a")
        let b = table.insert("b")
        #expect(table.lookup(a) == "a" && table.lookup(b) == "b")
        table.remove(a)
        #expect(table.lookup(a) == nil)
        #expect(table.count == 1)
    }

    @Test func aStaleTokenDoesNotFindTheSlotsNextEntry() {
        var table = RegistrationTable<String>(capacity: 4)
        let old = table.insert("closed connection")
        table.remove(old)
        let new = table.insert("new connection")
        #expect(new & 0xFFFF_FFFF == old & 0xFFFF_FFFF, "the slot is reused")
        #expect(table.lookup(old) == nil, "an event queued for the closed descriptor finds nothing")
        #expect(table.lookup(new) == "new connection")
    }

    @Test func removingTwiceFreesTheSlotOnce() {
        var table = RegistrationTable<Int>(capacity: 4)
        let token = table.insert(1)
        table.remove(token)
        table.remove(token)
        let first = table.insert(2)
        let second = table.insert(3)
        #expect(first & 0xFFFF_FFFF != second & 0xFFFF_FFFF, "one slot is never handed out twice")
        #expect(table.lookup(first) == 2 && table.lookup(second) == 3)
    }

    @Test func forEachVisitsTheLiveEntries() {
        var table = RegistrationTable<Int>(capacity: 8)
        let tokens = (0..<6).map { table.insert($0) }
        table.remove(tokens[1])
        table.remove(tokens[4])
        var seen: [Int] = []
        table.forEach { seen.append($0) }
        #expect(seen.sorted() == [0, 2, 3, 5])
    }
}
