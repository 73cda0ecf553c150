import Glibc

/// A multi-producer, single-consumer queue whose consumer is an event loop woken by an eventfd.
///
/// The lock is taken only when a message is posted or the loop drains its mailbox after the
/// eventfd fired — config publications, reports and shutdown, never per request.
///
/// A pthread mutex rather than `Synchronization.Mutex`: the latter locks inside the Swift
/// runtime library, which is not built with ThreadSanitizer, so TSan cannot see the lock and
/// reports every post as a race; `pthread_mutex_lock` is intercepted by every sanitizer.
/// `@unchecked Sendable` is safe because `queue` is only touched with `lock` held.
public final class Mailbox<Message: Sendable>: @unchecked Sendable {
    public let eventFD: Int32
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var queue: [Message] = []

    public init() throws(SystemError) {
        eventFD = try Syscall.eventfd()
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_mutex_t())
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
        Syscall.close(eventFD)
    }

    public func post(_ message: Message) {
        pthread_mutex_lock(lock)
        queue.append(message)
        pthread_mutex_unlock(lock)
        Syscall.signalCounter(eventFD)
    }

    /// Takes every waiting message (called by the owning loop when `eventFD` is readable).
    public func drain() -> [Message] {
        Syscall.drainCounter(eventFD)
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let messages = queue
        queue.removeAll()
        return messages
    }
}
