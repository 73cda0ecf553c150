/// One version's traffic as one worker saw it: fixed-size counters and histograms, recorded in
/// plain fields when an exchange finishes (no allocation, no atomic), copied out on the tick
/// and summed over the workers for `/metrics`.
struct VersionStats: Sendable {
    /// Histogram bucket bounds in seconds: from 1 ms API calls to 2-minute LLM streams.
    static let bucketBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    /// The bucket of a duration: the same bounds in ns as literals, so the request path reads no
    /// global (a `static let` table costs a lazy-initialisation check per read).
    @inline(__always)
    static func bucket(_ ns: UInt64) -> Int {
        switch ns {
        case ...1_000_000: return 0
        case ...2_500_000: return 1
        case ...5_000_000: return 2
        case ...10_000_000: return 3
        case ...25_000_000: return 4
        case ...50_000_000: return 5
        case ...100_000_000: return 6
        case ...250_000_000: return 7
        case ...500_000_000: return 8
        case ...1_000_000_000: return 9
        case ...2_500_000_000: return 10
        case ...5_000_000_000: return 11
        case ...10_000_000_000: return 12
        case ...30_000_000_000: return 13
        case ...60_000_000_000: return 14
        case ...120_000_000_000: return 15
        default: return 16
        }
    }

    /// A latency histogram: per-bucket counts (the last one is +Inf), their sum and count.
    struct Histogram: Sendable {
        var buckets = InlineArray<17, UInt64>(repeating: 0)
        var sumNs: UInt64 = 0
        var count: UInt64 = 0

        mutating func record(_ ns: UInt64) {
            buckets[VersionStats.bucket(ns)] += 1
            sumNs &+= ns
            count += 1
        }

        mutating func add(_ other: Histogram) {
            for index in buckets.indices { buckets[index] += other.buckets[index] }
            sumNs &+= other.sumNs
            count += other.count
        }
    }

    /// Finished exchanges by status code (100–599, the proxy's own answers included), for
    /// requests routed by weight and pinned by header.
    var weighted = InlineArray<500, UInt64>(repeating: 0)
    var pinned = InlineArray<500, UInt64>(repeating: 0)
    /// Exchanges that ended without a status (the client left, a response cut off, a tunnel).
    var withoutStatus: UInt64 = 0
    /// Proxy-made answers and cut-off responses, per `ProxyError.rawValue`.
    var proxyErrors = ProxyError.Counts(repeating: 0)
    /// gRPC calls by `grpc-status` (0…16).
    var grpcStatuses = InlineArray<17, UInt64>(repeating: 0)
    /// First head byte to finish.
    var duration = Histogram()
    /// Request handed to the backend to its first response byte.
    var firstByte = Histogram()
    /// Bytes written to backends (request heads and bodies) and to clients.
    var bytesToBackends: UInt64 = 0
    var bytesToClients: UInt64 = 0
    var started: UInt64 = 0
    var finished: UInt64 = 0

    /// Counts an exchange that chose this version.
    mutating func routed() {
        started += 1
    }

    /// Counts a finished exchange. `status` is what the client got: the backend's status, the
    /// proxy's answer, 101 for a tunnel; 0 when it got no complete answer.
    mutating func record(_ x: Exchange, _ outcome: ExchangeOutcome, status: Int) {
        finished += 1
        if (100...599).contains(status) {
            if x.route == .pinned { pinned[status - 100] += 1 } else { weighted[status - 100] += 1 }
        } else {
            withoutStatus += 1
        }
        switch outcome {
        case .rejected(let error), .truncated(let error): proxyErrors[error.rawValue] += 1
        case .completed, .tunnelled, .clientGone: break
        }
        if x.grpcStatus >= 0 { grpcStatuses[x.grpcStatus] += 1 }
        let timings = x.timings
        if timings.finished >= timings.started { duration.record(timings.finished - timings.started) }
        if timings.firstResponseByte != 0, timings.upstreamConnected != 0, timings.firstResponseByte >= timings.upstreamConnected {
            firstByte.record(timings.firstResponseByte - timings.upstreamConnected)
        }
        bytesToBackends += UInt64(x.upstreamBytes)
        bytesToClients += UInt64(x.clientBytes)
    }

    mutating func add(_ other: VersionStats) {
        for index in weighted.indices {
            weighted[index] += other.weighted[index]
            pinned[index] += other.pinned[index]
        }
        withoutStatus += other.withoutStatus
        for index in proxyErrors.indices { proxyErrors[index] += other.proxyErrors[index] }
        for index in grpcStatuses.indices { grpcStatuses[index] += other.grpcStatuses[index] }
        duration.add(other.duration)
        firstByte.add(other.firstByte)
        bytesToBackends += other.bytesToBackends
        bytesToClients += other.bytesToClients
        started += other.started
        finished += other.finished
    }
}

/// A worker's stats of one version, updated in place: a class, because a struct this size in
/// an array would be copied by the request path's updates.
final class VersionStatsCell {
    let name: String
    var stats = VersionStats()

    init(name: String) {
        self.name = name
    }
}

/// Failed connects to one endpoint of one version, as a worker publishes them.
struct EndpointFailures: Sendable {
    let version: String
    let endpoint: String
    var failures: UInt64
}

/// A version's stats under its name, as a worker publishes them.
struct NamedVersionStats: Sendable {
    let name: String
    var stats: VersionStats
}
