import Synchronization

/// A multi-producer, single-consumer queue whose consumer is an event loop woken by an eventfd.
///
/// The mutex is taken only when a message is posted or the loop drains its mailbox after the
/// eventfd fired — config publications and shutdown, never per request.
public final class Mailbox<Message: Sendable>: Sendable {
    public let eventFD: Int32
    private let queue = Mutex<[Message]>([])

    public init() throws(SystemError) {
        eventFD = try Syscall.eventfd()
    }

    deinit { Syscall.close(eventFD) }

    public func post(_ message: Message) {
        queue.withLock { $0.append(message) }
        Syscall.signalCounter(eventFD)
    }

    /// Takes every waiting message (called by the owning loop when `eventFD` is readable).
    public func drain() -> [Message] {
        Syscall.drainCounter(eventFD)
        return queue.withLock { queue in
            let messages = queue
            queue.removeAll()
            return messages
        }
    }
}
