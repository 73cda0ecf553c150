import Glibc
import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// One endpoint of one version to probe, and how: over TLS, with the name to verify, for an
/// `https` backend.
struct ProbeTarget: Sendable {
    let key: HealthBook.Key
    let check: HealthCheck
    var tls: TLSClientContext? = nil
    var serverName = ""
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

/// The prober's loop: a non-blocking connect, one `GET` (or, to a gRPC endpoint, one `Healthz`
/// call over HTTP/2), one answer read per probe.
private final class ProbeLoop {
    final class Probe {
        let transport: PeerTransport
        var fd: Int32 { transport.fd }
        let token: UInt64
        let deadline: UInt64
        var connected = false
        /// Connected, TLS handshake not done yet.
        var handshaking = false
        var received: [UInt8] = []
        /// The `Healthz` call of a gRPC endpoint's probe.
        var call: GRPCHealthCall?

        init(transport: PeerTransport, token: UInt64, deadline: UInt64) {
            self.transport = transport
            self.token = token
            self.deadline = deadline
        }
    }

    struct Slot {
        var target: ProbeTarget
        var nextAt: UInt64
        var probe: Probe?
        /// The endpoint's last TLS session, resumed by the next probe.
        let sessions = TLSSessionSlot()
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
        } catch where error.isOutOfResources {
            // Our own limit, not the endpoint's fault: no verdict; the next interval tries again.
            slots[key] = slot
            return
        } catch {
            slots[key] = slot
            return report(key, .failed("cannot connect (\(error))"))
        }
        let transport: PeerTransport
        if let tls = slot.target.tls {
            guard let connection = tls.connect(fd: fd, serverName: slot.target.serverName, sessions: slot.sessions) else {
                Syscall.close(fd)
                slots[key] = slot
                return report(key, .failed("cannot start TLS"))
            }
            transport = .tls(connection)
        } else {
            transport = .plain(SocketTransport(fd: fd))
        }
        let probe = Probe(transport: transport, token: nextToken, deadline: now + UInt64(slot.target.check.timeoutMs))
        nextToken += 1
        do {
            try selector.register(fd, token: probe.token)
        } catch {
            transport.close()
            slots[key] = slot
            return report(key, .failed("cannot watch the connection (\(error))"))
        }
        probing[probe.token] = key
        slot.probe = probe
        slots[key] = slot
        if progress == .connected { advance(key) }
    }

    /// Moves a probe on after an event: finish the connect (and the TLS handshake), send the
    /// request, then read.
    private func advance(_ key: HealthBook.Key) {
        guard let slot = slots[key], let probe = slot.probe else { return }
        if !probe.connected {
            let error = Socket.pendingError(probe.fd)
            guard error == 0 else { return conclude(key, .failed("cannot connect (\(SystemError("connect", errno: error)))")) }
            probe.connected = true
            probe.handshaking = probe.transport.isTLS
            if !probe.handshaking { guard send(key, slot, probe) else { return } }
        }
        if probe.handshaking, let tls = probe.transport.tls {
            do {
                guard try tls.handshake() == .done else { return }
            } catch {
                return conclude(key, .failed("\(error)"))
            }
            probe.handshaking = false
            guard send(key, slot, probe) else { return }
        }
        if let call = probe.call { return advanceCall(key, probe, call) }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while probe.received.count < ProbeAnswer.maxBytes {
            let room = min(chunk.count, ProbeAnswer.maxBytes - probe.received.count)
            let result = chunk.withUnsafeMutableBytes { try? probe.transport.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<room])) }
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

    /// Reads what the gRPC endpoint sent into the call, and writes what the call answers
    /// (SETTINGS acknowledgements, window updates), until its verdict.
    private func advanceCall(_ key: HealthBook.Key, _ probe: Probe, _ call: GRPCHealthCall) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            switch chunk.withUnsafeMutableBytes({ try? probe.transport.read(into: $0) }) {
            case .processed(0)?, nil:
                return conclude(key, call.verdict ?? .failed("closed the connection before answering Healthz"))
            case .processed(let count)?:
                if let problem = chunk.withUnsafeBytes({ call.receive(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }) {
                    return conclude(key, .failed("broke HTTP/2 (\(problem))"))
                }
                guard let bytes = call.output(), write(bytes, to: probe) else { return conclude(key, .failed("could not answer over HTTP/2")) }
                if let verdict = call.verdict { return conclude(key, verdict) }
            case .wouldBlock?:
                return
            }
        }
    }

    /// Writes a probe's bytes (small enough for one write); false when they did not all go.
    private func write(_ bytes: [UInt8], to probe: Probe) -> Bool {
        bytes.isEmpty || bytes.withUnsafeBytes { try? probe.transport.write($0, UnsafeRawBufferPointer(start: nil, count: 0)) } == .processed(bytes.count)
    }

    /// Sends the probe's request (small enough for one write); false when the probe ended.
    private func send(_ key: HealthBook.Key, _ slot: Slot, _ probe: Probe) -> Bool {
        if key.grpc {
            guard let call = try? GRPCHealthCall(authority: key.address.description), let bytes = call.output(), write(bytes, to: probe) else {
                conclude(key, .failed("could not send the Healthz call"))
                return false
            }
            probe.call = call
            return true
        }
        let request = Array("""
            GET \(slot.target.check.path) HTTP/1.1\r\nHost: \(key.address)\r\nUser-Agent: switchyard-health-check\r\n\
            Accept: */*\r\nConnection: close\r\n\r\n
            """.utf8)
        guard write(request, to: probe) else {
            conclude(key, .failed("could not send the request"))
            return false
        }
        return true
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
        probe.transport.close()
    }
}
