import SwitchyardHTTP2

/// How an exchange ended. Set once, by `Worker.finish`.
enum ExchangeOutcome: Equatable {
    /// The backend's response reached the client in full.
    case completed
    /// A WebSocket tunnel ran and closed.
    case tunnelled
    /// The proxy answered with an error; nothing (more) went to a backend.
    case rejected(ProxyError)
    /// The client went away (or its connection failed) before its response was complete.
    case clientGone
    /// The response was cut off after part of it reached the client.
    case truncated(ProxyError)
}

/// A worker's tally of finished exchanges: plain fields on the request path, copied into a
/// `LockedValue` on the tick for `/status`.
struct ExchangeCounters: Sendable {
    var completed: UInt64 = 0
    var tunnelled: UInt64 = 0
    var clientGone: UInt64 = 0
    /// Per `ProxyError.rawValue`: answered by the proxy, and cut short.
    var rejected = ProxyError.Counts(repeating: 0)
    var truncated = ProxyError.Counts(repeating: 0)
    /// Backend attempts after the first (next endpoint, resend), and bytes written.
    var retries: UInt64 = 0
    var bytesToClients: UInt64 = 0
    var bytesToBackends: UInt64 = 0
    /// Connections answered 503 for `limits.max_connections` (not exchanges: nothing was read).
    var refusedConnections: UInt64 = 0
    /// HTTP/2 connections the proxy ended with GOAWAY, per `H2GoAwayReason.rawValue`.
    var http2GoAways = H2GoAwayCounts(repeating: 0)
    /// HTTP/2 streams that waited for a backend socket (the descriptor budget).
    var descriptorWaits: UInt64 = 0

    var finished: UInt64 {
        var total = completed + tunnelled + clientGone
        for index in rejected.indices { total += rejected[index] + truncated[index] }
        return total
    }

    mutating func record(_ outcome: ExchangeOutcome, retries: Int, clientBytes: Int, upstreamBytes: Int) {
        self.retries += UInt64(retries)
        bytesToClients += UInt64(clientBytes)
        bytesToBackends += UInt64(upstreamBytes)
        switch outcome {
        case .completed: completed += 1
        case .tunnelled: tunnelled += 1
        case .clientGone: clientGone += 1
        case .rejected(let error): rejected[error.rawValue] += 1
        case .truncated(let error): truncated[error.rawValue] += 1
        }
    }

    mutating func add(_ other: ExchangeCounters) {
        completed += other.completed
        tunnelled += other.tunnelled
        clientGone += other.clientGone
        retries += other.retries
        bytesToClients += other.bytesToClients
        bytesToBackends += other.bytesToBackends
        refusedConnections += other.refusedConnections
        descriptorWaits += other.descriptorWaits
        for index in rejected.indices {
            rejected[index] += other.rejected[index]
            truncated[index] += other.truncated[index]
        }
        for index in http2GoAways.indices { http2GoAways[index] += other.http2GoAways[index] }
    }
}

/// One counter per `H2GoAwayReason`, inline (no allocation when counters are copied).
typealias H2GoAwayCounts = InlineArray<7, UInt64>

extension H2GoAwayCounts {
    var total: UInt64 { indices.reduce(0) { $0 &+ self[$1] } }
}
