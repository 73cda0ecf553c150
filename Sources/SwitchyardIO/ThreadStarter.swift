import CLinuxShims
import Glibc

/// Starts detached OS threads. Event loops are threads of their own for the life of the
/// process, so neither Foundation's `Thread` nor a join is needed.
public enum ThreadStarter {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        // Safe because the retained box is released exactly once, by the new thread.
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { argument in
            // Safe because `pthread_create` passes back the non-nil `box` given to it.
            let box = Unmanaged<Box>.fromOpaque(argument.unsafelyUnwrapped).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard status == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: status)
        }
        _ = sy_set_thread_name(thread, String(name.prefix(15)))
        pthread_detach(thread)
    }
}
