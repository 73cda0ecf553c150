import Glibc
import SwitchyardHTTP
import SwitchyardIO
import SwitchyardRouting

/// The admin API on the control thread: `/healthz`, `/status` and `/metrics`, one short-lived
/// connection per request.
extension ControlPlane {
    func acceptAdmin() {
        while let accepted = try? Syscall.accept(adminFD) {
            let connection = AdminConnection(fd: accepted.fd, acceptedAt: Clock.nowMs())
            do {
                try add(accepted.fd, .admin(connection))
            } catch {
                Syscall.close(accepted.fd)
            }
        }
    }

    /// Closes admin connections that did not send a complete request in time, so an idle or
    /// slow client cannot hold descriptors.
    func closeStalledAdminConnections() {
        let now = Clock.nowMs()
        for (token, source) in sources {
            if case .admin(let connection) = source, now - connection.acceptedAt > Self.adminRequestMs {
                closeAdmin(connection, token: token)
            }
        }
    }

    private func closeAdmin(_ connection: AdminConnection, token: UInt64) {
        sources[token] = nil
        selector.deregister(connection.fd)
        Syscall.close(connection.fd)
    }

    func serveAdmin(_ connection: AdminConnection, token: UInt64) {
        switch connection.readRequest() {
        case .needMore:
            return
        case .closed:
            break
        case .request(let request):
            let (status, body, type) = adminResponse(request)
            connection.respond(status: status, body: body, contentType: type)
        case .invalid(let status):
            connection.respond(
                status: status, body: "{\"error\":{\"code\":\"bad_request\",\"message\":\"malformed request\"}}\n",
                contentType: "application/json")
        }
        closeAdmin(connection, token: token)
    }

    private func adminResponse(_ request: AdminRequest) -> (Int, String, String) {
        let json = "application/json"
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        if path == "/v1/deploy" || path == "/v1/revert" || path == "/v1/upgrade" {
            let (status, body) = adminWrite(request, path: path)
            return (status, body, json)
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            return (405, "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"the admin API answers GET (and POST to /v1/deploy and /v1/revert)\"}}\n", json)
        }
        switch path {
        case "/healthz":
            return draining ? (503, "{\"status\":\"draining\"}\n", json) : (200, "{\"status\":\"ok\"}\n", json)
        case "/status":
            return (200, statusJSON(), json)
        case "/metrics":
            return (200, metricsText(), MetricsText.contentType)
        default:
            return (404, "{\"error\":{\"code\":\"not_found\",\"message\":\"admin endpoints: GET /healthz, GET /status, GET /metrics\"}}\n", json)
        }
    }

    /// Every worker's published version stats, summed by version name, in order of first sight.
    private func summedVersionStats() -> [NamedVersionStats] {
        var byName: [String: Int] = [:]
        var summed: [NamedVersionStats] = []
        for worker in workers {
            for entry in worker.stats.versions.load() {
                if let index = byName[entry.name] {
                    summed[index].stats.add(entry.stats)
                } else {
                    byName[entry.name] = summed.count
                    summed.append(entry)
                }
            }
        }
        return summed
    }

    func metricsText() -> String {
        var counters = ExchangeCounters()
        var failures: [EndpointFailures] = []
        var failureIndex: [String: Int] = [:]  // "version endpoint" → index in `failures`
        for worker in workers {
            for entry in worker.stats.connectFailures.load() {
                let key = "\(entry.version) \(entry.endpoint)"
                if let index = failureIndex[key] {
                    failures[index].failures += entry.failures
                } else {
                    failureIndex[key] = failures.count
                    failures.append(entry)
                }
            }
            counters.add(worker.stats.counters.load())
        }
        return MetricsText.render(.init(
            versions: summedVersionStats(), counters: counters, configured: state.versions.versions,
            plan: state.publishedRouting?.plan, endpoints: endpointHealth(),
            clientConnections: workers.reduce(0) { $0 + $1.stats.clientConnections.load(ordering: .relaxed) },
            backendSockets: workers.reduce(0) { $0 + $1.stats.backendSockets.load(ordering: .relaxed) },
            descriptorBudget: workers.reduce(0) { $0 + $1.stats.descriptorBudget },
            certificates: certificates.listeners.flatMap { $0.context.loaded.map { ($0.certFile, $0.notAfter) } },
            accessLog: accessLog.map { writer in
                let dropped = workers.reduce(writer.linesLost.load(ordering: .relaxed)) {
                    $0 + $1.stats.accessLogDropped.load(ordering: .relaxed)
                }
                return (writer.linesWritten.load(ordering: .relaxed), dropped)
            },
            generation: state.generation,
            failedReloads: state.failedReloads, reloads: state.reloadCounts, connectFailures: failures))
    }

    /// The health of every checked address, per version, in file order.
    private func endpointHealth() -> [(version: String, address: SocketAddress, health: EndpointHealth)] {
        var list: [(version: String, address: SocketAddress, health: EndpointHealth)] = []
        for (index, version) in state.versions.versions.enumerated() {
            for (addresses, grpc) in [(state.targets[index], false), (state.grpcTargets[index], true)] {
                guard let health = state.health.health(of: version, addresses: addresses, grpc: grpc) else { continue }
                for (address, endpoint) in zip(addresses, health) { list.append((version.name, address, endpoint)) }
            }
        }
        return list
    }

    func statusJSON() -> String {
        let outcome = state.lastOutcome
        let plan = state.publishedRouting?.plan ?? TrafficPlan(configured: state.versions)
        let inFlight = Dictionary(summedVersionStats().map { ($0.name, Int64($0.stats.started) - Int64($0.stats.finished)) }) { $1 }
        let versions = state.versions.versions.enumerated().map { index, version in
            versionJSON(version, index: index, plan: plan, inFlight: inFlight[version.name] ?? 0)
        }
        let applied = workers.map { String($0.stats.appliedGeneration.load(ordering: .relaxed)) }
        let appliedAt = workers.map { String($0.stats.appliedAtNs.load(ordering: .relaxed)) }
        let errors = outcome.errors.map(JSONText.quote).joined(separator: ",")
        var counters = ExchangeCounters()
        for worker in workers { counters.add(worker.stats.counters.load()) }
        return """
            {"service":\(JSONText.quote(state.versions.service)),"state":"\(Self.serviceState(plan, state.versions))","fail_open":\(plan.failOpen),\
            "pid":\(getpid()),"upgraded_from":\(Handover.upgradedFrom.map(String.init) ?? "null"),"upgrade":\(upgradeJSON()),\
            "generation":\(state.generation),"versions_generation":\(state.versions.generation),\
            "versions_change":\(changeJSON(state.versions.change)),\
            "workers":{"count":\(workers.count),"applied_generation":[\(applied.joined(separator: ","))],\
            "applied_at_monotonic_ns":[\(appliedAt.joined(separator: ","))]},\
            "draining":\(draining),\
            "unresolved_endpoints":[\(state.unresolved.map(JSONText.quote).joined(separator: ","))],\
            "connections_refused_over_limit":\(counters.refusedConnections),\
            "exchanges":\(exchangesJSON(counters)),\
            "auth":{"enabled":\(state.tokens != nil),"tokens":\(state.tokens?.count ?? 0)},\
            "last_reload":{"time":"\(outcome.time)","trigger":\(JSONText.quote(outcome.trigger)),"outcome":"\(outcome.result)","errors":[\(errors)],\
            "rejected_since":\(state.rejectedSince.map(JSONText.quote) ?? "null")},\
            "failed_reloads":\(state.failedReloads),\
            "tls":\(tlsJSON()),\
            "versions":[\(versions.joined(separator: ","))]}

            """
    }

    /// Each TLS listener's certificates in use, with their expiry, and why new files on disk
    /// are not in use (if so).
    private func tlsJSON() -> String {
        let entries = certificates.listeners.map { listener in
            let loaded = listener.context.loaded.map { certificate in
                "{\"cert_file\":\(JSONText.quote(certificate.certFile)),\"subject\":\(JSONText.quote(certificate.subject)),"
                    + "\"not_after_unix\":\(certificate.notAfter)}"
            }
            return "{\"listener\":\(listener.index),\"certificates\":[\(loaded.joined(separator: ","))],"
                + "\"error\":\(listener.error.map(JSONText.quote) ?? "null")}"
        }
        return "[\(entries.joined(separator: ","))]"
    }

    /// Anyscale's service states: UNHEALTHY when a version with a share is; UPDATING while a
    /// version (a new one, after a deploy) is STARTING beside running ones; STARTING while none
    /// runs yet; RUNNING otherwise. A dark version (0 %) that is down is shown as such but
    /// leaves the service's state alone: no unpinned traffic goes there.
    static func serviceState(_ plan: TrafficPlan, _ versions: VersionsConfig) -> String {
        let states = zip(plan.states, versions.versions)
        if states.contains(where: { $0.0 == .unhealthy && $0.1.trafficBasisPoints > 0 }) { return "UNHEALTHY" }
        guard plan.states.contains(.starting) else { return "RUNNING" }
        return plan.states.contains(.running) ? "UPDATING" : "STARTING"
    }

    /// The last upgrade of this process (SIGUSR2), or null.
    private func upgradeJSON() -> String {
        guard let outcome = upgradeOutcome else { return "null" }
        return "{\"state\":\"\(outcome.state.rawValue)\",\"pid\":\(outcome.pid),\"message\":\(JSONText.quote(outcome.message)),\"time\":\"\(outcome.time)\"}"
    }

    /// Who wrote the versions file's current generation, or null for a hand-written file.
    private func changeJSON(_ change: VersionsConfig.Change?) -> String {
        guard let change else { return "null" }
        return "{\"time\":\(JSONText.quote(change.time)),\"actor\":\(JSONText.quote(change.actor)),\"command\":\(JSONText.quote(change.command))}"
    }

    /// Each address with its health.
    private func addressesJSON(_ version: VersionsConfig.Version, _ addresses: [SocketAddress], grpc: Bool) -> String {
        let health = state.health.health(of: version, addresses: addresses, grpc: grpc)
        let endpoints = addresses.enumerated().map { position, address in
            let endpoint = health?[position]
            return "{\"address\":\(JSONText.quote(address.description)),\"state\":\"\(endpoint?.state.rawValue ?? "NOT_CHECKED")\","
                + "\"last_check\":\(endpoint?.lastCheck.map(JSONText.quote) ?? "null"),"
                + "\"last_failure\":\(endpoint?.lastFailure.map(JSONText.quote) ?? "null")}"
        }
        return "[\(endpoints.joined(separator: ","))]"
    }

    private func versionJSON(_ version: VersionsConfig.Version, index: Int, plan: TrafficPlan, inFlight: Int64) -> String {
        let check = version.healthCheck.map { check in
            "{\"path\":\(JSONText.quote(check.path)),\"interval_ms\":\(check.intervalMs),\"timeout_ms\":\(check.timeoutMs),"
                + "\"healthy_threshold\":\(check.healthyThreshold),\"unhealthy_threshold\":\(check.unhealthyThreshold)}"
        } ?? "false"
        return "{\"name\":\(JSONText.quote(version.name)),\"state\":\"\(plan.states[index].rawValue)\","
            + "\"traffic_percent\":\(version.trafficPercentText),\"effective_traffic_percent\":\(Self.percentText(plan.effective[index])),"
            + "\"created_at\":\(state.createdAt[version.name].map(JSONText.quote) ?? "null"),\"in_flight\":\(max(inFlight, 0)),"
            + "\"on_unhealthy\":\(JSONText.quote(version.onUnhealthy.description)),\"retry_other_version\":\(version.retryOtherVersion),"
            + "\"health_check\":\(check),"
            + "\"endpoints\":[\(version.endpoints.map { JSONText.quote($0.description) }.joined(separator: ","))],"
            + "\"addresses\":\(addressesJSON(version, state.targets[index], grpc: false)),"
            + "\"grpc_endpoints\":[\(version.grpcEndpoints.map { JSONText.quote($0.description) }.joined(separator: ","))],"
            + "\"grpc_addresses\":\(addressesJSON(version, state.grpcTargets[index], grpc: true))}"
    }
}


/// Finished exchanges by outcome, summed over the workers (as of their last tick): the
/// proxy's own answers and cut-off responses by `ProxyError` label, zero counts left out.
func exchangesJSON(_ counters: ExchangeCounters) -> String {
    func byLabel(_ counts: ProxyError.Counts) -> String {
        let fields = ProxyError.allCases.compactMap { error in
            counts[error.rawValue] == 0 ? nil : "\"\(error.label)\":\(counts[error.rawValue])"
        }
        return "{\(fields.joined(separator: ","))}"
    }
    return """
        {"finished":\(counters.finished),"completed":\(counters.completed),"tunnelled":\(counters.tunnelled),\
        "client_gone":\(counters.clientGone),"rejected":\(byLabel(counters.rejected)),"truncated":\(byLabel(counters.truncated)),\
        "retries":\(counters.retries),"bytes_to_clients":\(counters.bytesToClients),"bytes_to_backends":\(counters.bytesToBackends)}
        """
}

/// One admin API request on its own short-lived connection.
final class AdminConnection {
    enum ReadResult {
        case needMore
        case closed
        case request(AdminRequest)
        case invalid(status: Int)
    }

    /// Most bytes of a request body (a deploy's JSON).
    static let maxBodyBytes = 1 << 20

    let fd: Int32
    let acceptedAt: UInt64
    private let input = ByteBuffer(capacity: 4096)
    private var parser = HeadParser(limits: HeadLimits(maxHeadBytes: 16384, maxHeaders: 64, maxURIBytes: 2048))
    private var head = RequestHead()
    /// Set once the head is complete: its length and the body's.
    private var lengths: (head: Int, body: Int)?

    init(fd: Int32, acceptedAt: UInt64) {
        self.fd = fd
        self.acceptedAt = acceptedAt
    }

    func readRequest() -> ReadResult {
        // Room for what is still to come, 64 KiB at a time: memory grows only with the bytes a
        // client really sends, whatever its Content-Length says.
        input.reserveWritable(lengths.map { min(65536, max(4096, $0.head + $0.body - input.readableCount)) } ?? 4096)
        switch try? input.read(from: fd) {
        case .processed(0)?, nil: return .closed
        case .wouldBlock?: return .needMore
        case .processed?: break
        }
        if lengths == nil {
            switch parser.parseRequest(input.readableBytes, into: &head) {
            case .needMore: return .needMore
            case .error(let error): return .invalid(status: error.status)
            case .complete(let length):
                switch head.framing {
                case .none: lengths = (length, 0)
                case .contentLength(let body) where body <= Self.maxBodyBytes: lengths = (length, body)
                case .contentLength: return .invalid(status: 413)
                case .chunked, .untilClose: return .invalid(status: 411)
                }
            }
        }
        guard let lengths, input.readableCount >= lengths.head + lengths.body else { return .needMore }
        let bytes = input.readableBytes
        return .request(AdminRequest(
            method: String(decoding: head.method.bytes(in: bytes), as: UTF8.self),
            path: String(decoding: head.target.bytes(in: bytes), as: UTF8.self),
            authorization: head.authorization.map { String(decoding: $0.bytes(in: bytes), as: UTF8.self) },
            body: Array(bytes[lengths.head..<(lengths.head + lengths.body)])))
    }

    /// Writes the whole answer at once: the send buffer is made large enough first, so a big
    /// `/metrics` page is not cut off by a non-blocking write.
    func respond(status: Int, body: String, contentType: String) {
        let out = ByteBuffer(capacity: 1024)
        out.append("HTTP/1.1 \(status) \(status == 200 ? "OK" : ErrorRenderer.reason(status))\r\n"
            + "Content-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n")
        Socket.setSendBuffer(fd, bytes: out.readableCount + body.utf8.count + 4096)
        if head.methodKind != .head { out.append(body) }
        _ = try? out.flush(to: fd)
    }
}

/// What an admin client asked.
struct AdminRequest {
    let method: String
    let path: String
    /// The `Authorization` field's value, as sent.
    let authorization: String?
    let body: [UInt8]
}
