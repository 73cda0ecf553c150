import SwitchyardIO

/// HTTP/2 streams and the descriptor budget (`DescriptorBudget`): a stream connects when a
/// socket is free, or waits for one, and gets 503 after `timeouts.connect_ms`.
extension Worker {
    /// Whether a stream's exchange may connect now: a socket is free, an idle pooled
    /// connection of its version can serve it, or closing an idle one elsewhere makes room.
    func mayConnectStream(_ x: Exchange) -> Bool {
        if descriptors.backendSocketFree { return true }
        if let routes = x.routes, routes.endpoints[x.versionIndex].http.hasIdleConnection { return true }
        guard let idle = pools.someIdleConnection else { return false }
        closeUpstream(idle)
        return descriptors.backendSocketFree
    }

    /// Queues a stream's exchange (routed, its head written) until a backend socket is free.
    func waitForDescriptor(_ x: Exchange) {
        tally.counters.descriptorWaits += 1
        reportDescriptorShortage(nil)
        guard descriptors.wait(x) else {
            return perform(x, x.machine.noEndpointLeft(outOfDescriptors: true),
                           message: "the proxy is at its descriptor budget and \(DescriptorBudget<Exchange>.maxWaiters) requests wait already; try again")
        }
        x.waitingSince = max(now, 1)
    }

    /// Starts the waiting exchanges that now fit, oldest first; after each batch of events.
    func admitDescriptorWaiters() {
        while let x = descriptors.oldest {
            // Ended while waiting (the client reset its stream): its entry is stale.
            if x.waitingSince != 0 {
                guard mayConnectStream(x) else { return }
                x.waitingSince = 0
                connectStream(x)
                if case .h2(let s) = x.client { scheduleHTTP2(s.connection) }
            }
            descriptors.removeOldest()
        }
    }

    /// Answers 503 to the exchanges that waited `timeouts.connect_ms`; on the tick.
    func expireDescriptorWaiters() {
        let limit = UInt64(settings.timeouts.connectMs)
        while let x = descriptors.oldest {
            if x.waitingSince != 0 {
                guard now >= x.waitingSince + limit else { return }
                x.waitingSince = 0
                x.forwardedHead.clear()
                perform(x, x.machine.noEndpointLeft(outOfDescriptors: true))
                if case .h2(let s) = x.client { scheduleHTTP2(s.connection) }
            }
            descriptors.removeOldest()
        }
    }

    /// Tells the control thread (at most once a second) that the budget is reached.
    func reportDescriptorShortage(_ error: SystemError?) {
        guard descriptors.mayReportShortage(now: now) else { return }
        let detail = error.map { "a backend connect failed (\($0))" } ?? "HTTP/2 streams wait for a backend socket"
        controlMailbox.post(.descriptorsExhausted(worker: id, budget: descriptors.limit, detail: detail))
    }
}
