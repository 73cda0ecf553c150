import Glibc
import Logging
import Synchronization
import SwitchyardIO
import SwitchyardRouting

/// Writes the access log on a thread of its own, so a slow disk or a full pipe never stalls a
/// worker: workers hand over full blocks (and whatever they hold on their 100 ms tick); when
/// the writer falls behind and no free block is left, workers drop lines and count them.
///
/// Memory is bounded: `blocksPerWorker` blocks of 256 KiB per worker, allocated at start.
final class AccessLogWriter: Sendable {
    enum Message: Sendable {
        case lines(AccessLogBuffer)
        /// SIGUSR1: open the path again (logrotate moved the file away).
        case reopen
        /// Write what is queued, then stop.
        case stop
    }

    static let blocksPerWorker = 4
    let settings: ServerConfig.AccessLog
    /// The path as opened (relative paths resolved against the config file); "-" is stdout.
    let path: String
    private let inbox: Mailbox<Message>
    private let free: LockedValue<[AccessLogBuffer]>
    private let stopped: Mailbox<Bool>
    private let logger: Logger
    /// Lines written, and lines lost to failed writes, for `/metrics` (changed by the writer
    /// thread only). Lines the workers dropped are counted by each `WorkerAccessLog`.
    let linesWritten = Atomic<UInt64>(0)
    let linesLost = Atomic<UInt64>(0)
    /// The descriptor the writer thread writes to; opened here so a bad path stops the start.
    private let initialFD: Int32

    init(settings: ServerConfig.AccessLog, path: String, workers: Int, logger: Logger) throws(LoadError) {
        self.settings = settings
        self.path = path
        self.logger = logger
        do {
            initialFD = path == "-" ? 1 : try FileIO.openForAppending(path)
            inbox = try Mailbox()
            stopped = try Mailbox()
        } catch {
            throw LoadError("access_log.path \(path): cannot open it for appending (\(error)); check the directory exists and is writable")
        }
        free = LockedValue((0..<(workers * Self.blocksPerWorker)).map { _ in AccessLogBuffer() })
    }

    func start() throws(SystemError) {
        try ThreadStarter.start(name: "access-log") { [self] in run() }
    }

    /// A free block for a worker, or nil when all are queued for writing.
    func takeFree() -> AccessLogBuffer? {
        free.update { $0.popLast() }
    }

    func submit(_ buffer: AccessLogBuffer) {
        inbox.post(.lines(buffer))
    }

    func reopen() {
        inbox.post(.reopen)
    }

    /// Writes what the workers handed over and stops; waits at most `timeoutMs` (a blocked
    /// destination must not hold up the exit).
    func stop(timeoutMs: Int32) {
        inbox.post(.stop)
        var poll = pollfd(fd: stopped.eventFD, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&poll, 1, timeoutMs)
    }

    private func run() {
        var fd = initialFD
        while true {
            var poll = pollfd(fd: inbox.eventFD, events: Int16(POLLIN), revents: 0)
            _ = Glibc.poll(&poll, 1, -1)
            for message in inbox.drain() {
                switch message {
                case .lines(let buffer):
                    write(buffer, to: fd)
                case .reopen:
                    fd = reopened(fd)
                case .stop:
                    stopped.post(true)
                    return
                }
            }
        }
    }

    private func write(_ buffer: AccessLogBuffer, to fd: Int32) {
        do {
            try FileIO.writeAll(fd, buffer.bytes)
            linesWritten.add(UInt64(buffer.lines), ordering: .relaxed)
        } catch {
            linesLost.add(UInt64(buffer.lines), ordering: .relaxed)
            logger.error("access log \(path): \(error); \(buffer.lines) lines lost")
        }
        buffer.count = 0
        buffer.lines = 0
        free.update { $0.append(buffer) }
    }

    private func reopened(_ fd: Int32) -> Int32 {
        guard path != "-" else { return fd }
        do {
            let fresh = try FileIO.openForAppending(path)
            Syscall.close(fd)
            logger.info("access log \(path) reopened (SIGUSR1)")
            return fresh
        } catch {
            logger.error("access log \(path): cannot reopen (\(error)); still writing to the file opened before")
            return fd
        }
    }
}
