import Synchronization
import SwitchyardIO

/// What one worker publishes for the control thread, and the only part of a worker the
/// control thread reads: copies made on the worker's 100 ms tick (never per request), and the
/// generation it routes with. Messages go the other way through `WorkerHandle.mailbox`.
final class WorkerStats: Sendable {
    /// The snapshot generation the worker routes with, for `/status` and reload measurements.
    let appliedGeneration = Atomic<UInt64>(0)
    /// When it started routing with that generation (CLOCK_MONOTONIC, ns).
    let appliedAtNs = Atomic<UInt64>(0)
    /// Open client connections and backend sockets as of the last tick (stored, never incremented).
    let clientConnections = Atomic<Int>(0)
    let backendSockets = Atomic<Int>(0)
    /// Access log lines the worker dropped because no block was free, in all.
    let accessLogDropped = Atomic<UInt64>(0)
    /// Client and backend sockets the worker may hold.
    let descriptorBudget: Int
    let counters = LockedValue(ExchangeCounters())
    let versions = LockedValue<[NamedVersionStats]>([])
    let connectFailures = LockedValue<[EndpointFailures]>([])

    init(descriptorBudget: Int) {
        self.descriptorBudget = descriptorBudget
    }

    func applied(generation: UInt64) {
        appliedAtNs.store(Clock.nowNs(), ordering: .relaxed)
        appliedGeneration.store(generation, ordering: .relaxed)
    }
}

/// The control thread's view of a worker: its stats and its mailbox, nothing else.
struct WorkerHandle: Sendable {
    let id: Int
    let mailbox: Mailbox<WorkerMessage>
    let stats: WorkerStats
}
