/// What a selector token refers to on a worker.
enum Registration {
    case free
    case listener(Int32)
    case mailbox
    case tick
    case downstream(DownstreamConnection)
    case upstream(UpstreamConnection)
}

/// A slab of registrations addressed by epoll tokens.
///
/// A token packs the slot index (low 32 bits) with the slot's generation (high 32 bits). A
/// slot's generation changes when it is freed, so an event still queued for a descriptor that
/// was closed (and perhaps reused) in the same batch no longer matches and is skipped.
struct ConnectionTable {
    private struct Slot {
        var generation: UInt32 = 0
        var registration = Registration.free
    }

    private var slots: [Slot] = []
    private var freeSlots: [Int] = []

    init(capacity: Int) {
        slots.reserveCapacity(capacity)
        freeSlots.reserveCapacity(capacity)
    }

    mutating func insert(_ registration: Registration) -> UInt64 {
        let index: Int
        if let reused = freeSlots.popLast() {
            index = reused
        } else {
            index = slots.count
            slots.append(Slot())
        }
        slots[index].registration = registration
        return UInt64(slots[index].generation) << 32 | UInt64(index)
    }

    mutating func remove(_ token: UInt64) {
        let index = Int(token & 0xFFFF_FFFF)
        guard index < slots.count, UInt64(slots[index].generation) == token >> 32 else { return }
        slots[index].registration = .free
        slots[index].generation &+= 1
        freeSlots.append(index)
    }

    func lookup(_ token: UInt64) -> Registration {
        let index = Int(token & 0xFFFF_FFFF)
        guard index < slots.count, UInt64(slots[index].generation) == token >> 32 else { return .free }
        return slots[index].registration
    }

    /// Calls `body` for every registration (timer scans, shutdown).
    func forEach(_ body: (Registration) -> Void) {
        for slot in slots { body(slot.registration) }
    }
}
