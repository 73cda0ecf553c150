/// A multi-producer, single-consumer queue whose consumer is an event loop woken by an eventfd.
///
/// The mutex is taken only when a message is posted or the loop drains its mailbox after the
/// eventfd fired — config publications, reports and shutdown, never per request.
/// `@unchecked Sendable` is safe because `queue` is only touched with `mutex` held.
public final class Mailbox<Message: Sendable>: @unchecked Sendable {
    public let eventFD: Int32
    private let mutex = PthreadMutex()
    private var queue: [Message] = []

    public init() throws(SystemError) {
        eventFD = try Syscall.eventfd()
    }

    deinit {
        Syscall.close(eventFD)
    }

    public func post(_ message: Message) {
        mutex.withLock { queue.append(message) }
        Syscall.signalCounter(eventFD)
    }

    /// Takes every waiting message (called by the owning loop when `eventFD` is readable).
    public func drain() -> [Message] {
        Syscall.drainCounter(eventFD)
        return mutex.withLock {
            let messages = queue
            queue.removeAll()
            return messages
        }
    }
}
