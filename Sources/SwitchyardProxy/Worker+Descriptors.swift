import SwitchyardIO

/// One descriptor budget per worker for client and backend sockets alike.
///
/// An HTTP/1.1 client needs at most one backend socket, and client connections are limited
/// to half the budget (`limits.max_connections`, derived from the descriptor limit), so those
/// always fit. An HTTP/2 client's streams each need one: a stream opens a backend socket only
/// while the budget leaves one for every HTTP/1.1 client besides; otherwise it waits in a
/// bounded queue (first come, first served) until a socket closes, at most
/// `timeouts.connect_ms` (as HAProxy's `timeout queue` defaults to `timeout connect`), then it
/// gets 503 too_many_connections. Never a 502, and no endpoint is blamed: running out of
/// descriptors is the proxy's limit, not the backend's fault.
extension Worker {
    /// Streams waiting for a backend socket, at most.
    static let maxDescriptorWaiters = 4096

    /// Whether a backend socket may be opened for an HTTP/2 stream now, with one kept for each
    /// HTTP/1.1 client connection.
    private var backendSocketFree: Bool {
        let http1Clients = downstreamCount - http2Clients
        return downstreamCount + http1Clients + backendSockets + lingeringCount < settings.descriptorBudget
    }

    /// Whether a stream's exchange may connect now: a socket is free, an idle pooled
    /// connection of its version can serve it, or closing an idle one elsewhere makes room.
    func mayConnectStream(_ x: Exchange) -> Bool {
        if backendSocketFree { return true }
        if let routes = x.routes, routes.pools[x.versionIndex].contains(where: { !$0.idle.isEmpty }) { return true }
        guard let pool = pools.values.first(where: { !$0.idle.isEmpty }), let idle = pool.idle.last else { return false }
        closeUpstream(idle)
        return backendSocketFree
    }

    /// Queues a stream's exchange (routed, its head written) until a backend socket is free.
    func waitForDescriptor(_ x: Exchange) {
        counters.descriptorWaits += 1
        reportDescriptorShortage(nil)
        guard descriptorWaiters.count - descriptorWaitersHead < Self.maxDescriptorWaiters else {
            return perform(x, x.machine.noEndpointLeft(outOfDescriptors: true),
                           message: "the proxy is at its descriptor budget and \(Self.maxDescriptorWaiters) requests wait already; try again")
        }
        x.waitingSince = max(now, 1)
        descriptorWaiters.append(x)
    }

    /// Starts the waiting exchanges that now fit, oldest first; after each batch of events.
    func admitDescriptorWaiters() {
        while descriptorWaitersHead < descriptorWaiters.count {
            let x = descriptorWaiters[descriptorWaitersHead]
            // Ended while waiting (the client reset its stream): its entry is stale.
            if x.waitingSince != 0 {
                guard mayConnectStream(x) else { break }
                x.waitingSince = 0
                connectStream(x)
                if case .h2(let s) = x.client { scheduleHTTP2(s.connection) }
            }
            descriptorWaitersHead += 1
        }
        compactDescriptorWaiters()
    }

    /// Answers 503 to the exchanges that waited `timeouts.connect_ms`; on the tick.
    func expireDescriptorWaiters() {
        let limit = UInt64(settings.timeouts.connectMs)
        while descriptorWaitersHead < descriptorWaiters.count {
            let x = descriptorWaiters[descriptorWaitersHead]
            if x.waitingSince != 0 {
                guard now >= x.waitingSince + limit else { break }
                x.waitingSince = 0
                x.forwardedHead.clear()
                perform(x, x.machine.noEndpointLeft(outOfDescriptors: true))
                if case .h2(let s) = x.client { scheduleHTTP2(s.connection) }
            }
            descriptorWaitersHead += 1
        }
        compactDescriptorWaiters()
    }

    private func compactDescriptorWaiters() {
        guard descriptorWaitersHead == descriptorWaiters.count else { return }
        descriptorWaiters.removeAll(keepingCapacity: true)
        descriptorWaitersHead = 0
    }

    /// Tells the control thread (at most once a second) that the budget is reached.
    func reportDescriptorShortage(_ error: SystemError?) {
        guard now >= lastDescriptorReportMs + 1000 else { return }
        lastDescriptorReportMs = now
        let detail = error.map { "a backend connect failed (\($0))" } ?? "HTTP/2 streams wait for a backend socket"
        controlMailbox.post(.descriptorsExhausted(worker: id, budget: settings.descriptorBudget, detail: detail))
    }
}
