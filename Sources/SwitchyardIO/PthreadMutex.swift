import Glibc

/// A mutex for the few places threads meet: mailboxes and published counters, never the
/// request path.
///
/// A pthread mutex rather than `Synchronization.Mutex`: the latter locks inside the Swift
/// runtime library, which is not built with ThreadSanitizer, so TSan cannot see the lock and
/// reports every access it guards as a race; `pthread_mutex_lock` is intercepted by every
/// sanitizer. `@unchecked Sendable` is safe because the mutex itself is the synchronisation.
public final class PthreadMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
