/// A value one thread publishes now and then and others read: worker counters copied out on
/// the worker's tick, read by the admin API. Never on the request path.
///
/// `@unchecked Sendable` is safe because `value` is only touched with `mutex` held.
public final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let mutex = PthreadMutex()
    private var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    public func store(_ newValue: Value) {
        mutex.withLock { value = newValue }
    }

    public func load() -> Value {
        mutex.withLock { value }
    }

    /// Reads and changes the value in one critical section.
    public func update<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&value) }
    }
}
