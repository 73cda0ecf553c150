import Glibc
import SwitchyardIO

/// A binary upgrade without a refused connection (SIGUSR2, or `switchyard upgrade`): the
/// binary at this process's path is started again with the same arguments and given every
/// listening socket (`Handover`); it loads its config, starts serving on those sockets and
/// says "ready" on a pipe. Only then does this process stop accepting, drain and exit. A new
/// process that exits first (a broken binary or config) leaves this one serving, and says so.
struct UpgradeAttempt {
    let pid: pid_t
    let readyFD: Int32
    let token: UInt64
    let startedMs: UInt64
    var received: [UInt8] = []
}

/// How the last upgrade ended, for `/status` and `switchyard upgrade`.
struct UpgradeOutcome {
    enum State: String { case inProgress = "in_progress", succeeded, failed }
    var state: State
    var pid: pid_t
    var message: String
    var time: String
}

extension ControlPlane {
    /// How long a new process may take to load its config and serve.
    static let upgradeTimeoutMs: UInt64 = 60_000
    /// The path the running binary was started from, read at start (`Server.run` reads it
    /// first): a new binary renamed over it is what an upgrade starts. Read later, the link
    /// would name the replaced file, "… (deleted)".
    static let executablePath: String? = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let path = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.hasSuffix(" (deleted)") ? String(path.dropLast(" (deleted)".count)) : path
    }()

    func startUpgrade() {
        guard upgrade == nil, !draining else {
            logger.warning("SIGUSR2: \(draining ? "draining already" : "an upgrade is under way (PID \(upgrade!.pid))"); ignored")
            return
        }
        guard let path = Self.executablePath else {
            return failUpgrade(pid: 0, "cannot tell this binary's path (/proc/self/exe); not upgraded")
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            return failUpgrade(pid: 0, "cannot make the ready pipe (\(SystemError("pipe", errno: errno))); not upgraded")
        }
        let (readFD, writeFD) = (pipeFDs[0], pipeFDs[1])
        // The control thread reads without blocking; the new process writes one line.
        _ = fcntl(readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(readFD, F_SETFL, O_NONBLOCK)
        let inherited = listenerFDs + [adminFD]
        var environment = Self.environment(without: [Handover.listenVariable, Handover.readyVariable, Handover.fromVariable, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"])
        environment.append("\(Handover.listenVariable)=\(inherited.map(String.init).joined(separator: ","))")
        environment.append("\(Handover.readyVariable)=\(writeFD)")
        environment.append("\(Handover.fromVariable)=\(getpid())")
        // The new process gets exactly these descriptors: everything else is close-on-exec.
        for fd in inherited + [writeFD] { _ = fcntl(fd, F_SETFD, 0) }
        var pid: pid_t = 0
        let result = Self.spawn(path, arguments: CommandLine.arguments, environment: environment, pid: &pid)
        for fd in inherited { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        Syscall.close(writeFD)
        guard result == 0 else {
            Syscall.close(readFD)
            return failUpgrade(pid: 0, "cannot start \(path) (\(SystemError("posix_spawn", errno: result))); still serving")
        }
        let token: UInt64
        do {
            token = try add(readFD, .upgradePipe)
        } catch {
            Syscall.close(readFD)
            kill(pid, SIGTERM)
            return failUpgrade(pid: pid, "cannot watch the new process (\(error)); stopped it, still serving")
        }
        upgrade = UpgradeAttempt(pid: pid, readyFD: readFD, token: token, startedMs: Clock.nowMs())
        upgradeOutcome = UpgradeOutcome(state: .inProgress, pid: pid, message: "PID \(pid) (\(path)) is starting", time: ReloadState.timestamp())
        logger.notice("upgrade: started \(path) as PID \(pid) with \(inherited.count) listening sockets; serving until it is ready")
    }

    /// The ready pipe is readable: "ready" (hand over and drain), or its end (the new process
    /// exited before it served).
    func upgradeAnswered(token: UInt64) {
        guard var attempt = upgrade, attempt.token == token else { return }
        var chunk = [UInt8](repeating: 0, count: 64)
        let count = chunk.withUnsafeMutableBytes { read(attempt.readyFD, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
        if count > 0 {
            attempt.received += chunk[0..<count]
            upgrade = attempt
            guard attempt.received.contains(UInt8(ascii: "\n")) else { return }
        }
        endUpgrade(attempt)
        if attempt.received.starts(with: Array("ready".utf8)) {
            upgradeOutcome = UpgradeOutcome(state: .succeeded, pid: attempt.pid, message: "PID \(attempt.pid) serves; this process drains", time: ReloadState.timestamp())
            logger.notice("upgrade: PID \(attempt.pid) serves on the same sockets; no longer accepting, draining")
            ServiceManager.mainPID(attempt.pid, logger)
            startDrain(signal: SIGUSR2)
        } else {
            var status: Int32 = 0
            let reaped = waitpid(attempt.pid, &status, 0) == attempt.pid
            let how = !reaped ? "closed its ready pipe" : (status & 0x7f) == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
            failUpgrade(pid: attempt.pid, "upgrade failed: the new process (PID \(attempt.pid)) \(how) before it served (its log above says why); still serving")
        }
    }

    /// On the sweep tick: a new process that takes too long is stopped.
    func checkUpgradeTimeout() {
        guard let attempt = upgrade, Clock.nowMs() - attempt.startedMs > Self.upgradeTimeoutMs else { return }
        endUpgrade(attempt)
        kill(attempt.pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(attempt.pid, &status, 0)
        failUpgrade(pid: attempt.pid, "upgrade failed: the new process (PID \(attempt.pid)) was not ready after \(Self.upgradeTimeoutMs / 1000) s; stopped it, still serving")
    }

    private func endUpgrade(_ attempt: UpgradeAttempt) {
        remove(attempt.readyFD, token: attempt.token)
        Syscall.close(attempt.readyFD)
        upgrade = nil
    }

    private func failUpgrade(pid: pid_t, _ message: String) {
        upgradeOutcome = UpgradeOutcome(state: .failed, pid: pid, message: message, time: ReloadState.timestamp())
        logger.error("\(message)")
    }

    /// This process's environment without `names`.
    private static func environment(without names: [String]) -> [String] {
        var result: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if !names.contains(where: { text.hasPrefix($0 + "=") }) { result.append(text) }
            entry += 1
        }
        return result
    }

    private static func spawn(_ path: String, arguments: [String], environment: [String], pid: inout pid_t) -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        return posix_spawn(&pid, path, nil, nil, argv, envp)
    }
}
