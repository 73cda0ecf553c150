import Glibc
import SwitchyardIO
import SwitchyardRouting

/// One endpoint of one version to probe, and how.
struct ProbeTarget: Sendable, Equatable {
    let key: HealthBook.Key
    let check: HealthCheck
}

/// Runs the active health checks on a thread of its own, with its own epoll loop: one probe
/// per endpoint per interval for the whole process, never on a worker, never blocking the
/// control thread. The control thread posts the targets whenever the versions change; every
/// answer goes back as `ControlMessage.probed`, and the control thread's `HealthBook` decides
/// what it means.
final class HealthProber: Sendable {
    private let targets: Mailbox<[ProbeTarget]>
    private let answers: Mailbox<ControlMessage>

    init(answers: Mailbox<ControlMessage>) throws(SystemError) {
        self.targets = try Mailbox()
        self.answers = answers
    }

    func start() throws(SystemError) {
        let loop = try ProbeLoop(targets: targets, answers: answers)
        // Safe to hand over: the loop is only ever used by the thread it is given to.
        nonisolated(unsafe) let handedOver = loop
        try ThreadStarter.start(name: "health") { handedOver.run() }
    }

    /// Replaces the set of endpoints probed; endpoints that stay keep their schedule.
    func probe(_ list: [ProbeTarget]) {
        targets.post(list)
    }
}

/// The prober's loop: a non-blocking connect, one `GET`, one answer read per probe.
private final class ProbeLoop {
    final class Probe {
        let fd: Int32
        let token: UInt64
        let deadline: UInt64
        var connected = false
        var received: [UInt8] = []

        init(fd: Int32, token: UInt64, deadline: UInt64) {
            self.fd = fd
            self.token = token
            self.deadline = deadline
        }
    }

    struct Slot {
        var target: ProbeTarget
        var nextAt: UInt64
        var probe: Probe?
    }

    private let targets: Mailbox<[ProbeTarget]>
    private let answers: Mailbox<ControlMessage>
    private let selector: Selector
    private static let mailboxToken: UInt64 = 0
    private var slots: [HealthBook.Key: Slot] = [:]
    private var probing: [UInt64: HealthBook.Key] = [:]
    private var nextToken: UInt64 = 1

    init(targets: Mailbox<[ProbeTarget]>, answers: Mailbox<ControlMessage>) throws(SystemError) {
        self.targets = targets
        self.answers = answers
        self.selector = try Selector(capacity: 256)
        try selector.registerInput(targets.eventFD, token: Self.mailboxToken)
    }

    func run() {
        while true {
            let count = (try? selector.wait(timeoutMs: waitMs())) ?? 0
            for index in 0..<count {
                let event = selector.event(at: index)
                if event.token == Self.mailboxToken {
                    if let latest = targets.drain().last { replaceTargets(latest) }
                } else if let key = probing[event.token] {
                    advance(key)
                }
            }
            startAndExpire(now: Clock.nowMs())
        }
    }

    /// Until the next probe is due or times out (at most a second).
    private func waitMs() -> Int32 {
        let now = Clock.nowMs()
        var next = now + 1000
        for slot in slots.values { next = min(next, slot.probe?.deadline ?? slot.nextAt) }
        return Int32(next > now ? next - now : 0)
    }

    private func replaceTargets(_ list: [ProbeTarget]) {
        var kept: [HealthBook.Key: Slot] = [:]
        let now = Clock.nowMs()
        for target in list {
            if var slot = slots.removeValue(forKey: target.key) {
                slot.target = target
                kept[target.key] = slot
            } else {
                kept[target.key] = Slot(target: target, nextAt: now, probe: nil)
            }
        }
        for slot in slots.values { if let probe = slot.probe { close(probe) } }
        slots = kept
    }

    private func startAndExpire(now: UInt64) {
        for (key, slot) in slots {
            if let probe = slot.probe {
                if now >= probe.deadline {
                    let what = probe.connected ? "no answer" : "no connection"
                    conclude(key, .failed("\(what) within \(slot.target.check.timeoutMs) ms"))
                }
            } else if now >= slot.nextAt {
                start(key, slot, now: now)
            }
        }
    }

    private func start(_ key: HealthBook.Key, _ slot: Slot, now: UInt64) {
        var slot = slot
        slot.nextAt = now + UInt64(slot.target.check.intervalMs)
        let fd: Int32
        let progress: Socket.ConnectProgress
        do {
            (fd, progress) = try Socket.connect(to: key.address)
        } catch {
            slots[key] = slot
            return report(key, .failed("cannot connect (\(error))"))
        }
        let probe = Probe(fd: fd, token: nextToken, deadline: now + UInt64(slot.target.check.timeoutMs))
        nextToken += 1
        do {
            try selector.register(fd, token: probe.token)
        } catch {
            Syscall.close(fd)
            slots[key] = slot
            return report(key, .failed("cannot watch the connection (\(error))"))
        }
        probing[probe.token] = key
        slot.probe = probe
        slots[key] = slot
        if progress == .connected { advance(key) }
    }

    /// Moves a probe on after an event: finish the connect and send the request, then read.
    private func advance(_ key: HealthBook.Key) {
        guard let slot = slots[key], let probe = slot.probe else { return }
        if !probe.connected {
            let error = Socket.pendingError(probe.fd)
            guard error == 0 else { return conclude(key, .failed("cannot connect (\(SystemError("connect", errno: error)))")) }
            probe.connected = true
            let request = Array("""
                GET \(slot.target.check.path) HTTP/1.1\r\nHost: \(key.address)\r\nUser-Agent: switchyard-health-check\r\n\
                Accept: */*\r\nConnection: close\r\n\r\n
                """.utf8)
            let sent = request.withUnsafeBytes { try? Syscall.write(probe.fd, $0.baseAddress!, $0.count) }
            guard sent == .processed(request.count) else { return conclude(key, .failed("could not send the request")) }
        }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while probe.received.count < ProbeAnswer.maxBytes {
            let room = min(chunk.count, ProbeAnswer.maxBytes - probe.received.count)
            let result = chunk.withUnsafeMutableBytes { try? Syscall.read(probe.fd, $0.baseAddress!, room) }
            switch result {
            case .processed(0)?, nil:
                return conclude(key, ProbeAnswer.evaluate(probe.received, closed: true) ?? .failed("closed the connection"))
            case .processed(let count)?:
                probe.received += chunk[0..<count]
            case .wouldBlock?:
                if let verdict = ProbeAnswer.evaluate(probe.received, closed: false) { conclude(key, verdict) }
                return
            }
        }
        conclude(key, ProbeAnswer.evaluate(probe.received, closed: true) ?? .failed("sent an oversized answer"))
    }

    private func conclude(_ key: HealthBook.Key, _ result: ProbeResult) {
        guard var slot = slots[key], let probe = slot.probe else { return }
        close(probe)
        slot.probe = nil
        slots[key] = slot
        report(key, result)
    }

    private func report(_ key: HealthBook.Key, _ result: ProbeResult) {
        answers.post(.probed(key, result))
    }

    private func close(_ probe: Probe) {
        probing[probe.token] = nil
        selector.deregister(probe.fd)
        Syscall.close(probe.fd)
    }
}
