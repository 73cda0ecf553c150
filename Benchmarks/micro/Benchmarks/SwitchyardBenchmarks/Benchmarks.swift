import Benchmark
import Glibc
import Logging
import SwitchyardHTTP
import SwitchyardIO
import SwitchyardProxy
import SwitchyardRouting

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        maxDuration: .seconds(2),
        maxIterations: 100_000,
        thresholds: [
            // Allocations are exact: none may appear.
            .mallocCountTotal: .init(absolute: [.p90: 0]),
            // Time is noisy on a shared VM (2x swings seen between runs): flag only a tripling of the stored p90.
            .wallClock: .init(relative: [.p90: 200.0]),
        ]
    )

    let sampler = WeightedSampler(weights: [3000, 7000])
    Benchmark("SamplerPick", configuration: .init(scalingFactor: .mega)) { benchmark in
        var random = FastRandom(seed: 1)
        for _ in benchmark.scaledIterations {
            blackHole(sampler.pick(random.next()))
        }
    }

    let head = Array(("GET /v1/models/summarize?stream=true HTTP/1.1\r\nHost: api.example.com\r\n"
        + "User-Agent: bench/1.0\r\nAccept: */*\r\nAuthorization: Bearer bench-token\r\n"
        + "X-ANYSCALE-VERSION: v2\r\nContent-Type: application/json\r\n\r\n").utf8)
    Benchmark("RequestHeadParse", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var parser = HeadParser(limits: HeadLimits())
        var request = RequestHead()
        head.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                parser.reset()
                blackHole(parser.parseRequest(bytes, into: &request))
            }
        }
    }

    let snapshot = RoutingSnapshot(
        generation: 1,
        config: VersionsConfig(service: "bench", versions: [
            .init(name: "v1", trafficBasisPoints: 3000, endpoints: [Endpoint(host: "127.0.0.1", port: 1)]),
            .init(name: "v2", trafficBasisPoints: 7000, endpoints: [Endpoint(host: "127.0.0.1", port: 2)]),
        ]),
        tokens: TokenSet(tokens: ["old-token", "bench-token"]))
    let authorization = Array("Bearer bench-token".utf8)
    let pinned = Array("v2".utf8)
    Benchmark("RouteDecisionSampled", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var random = FastRandom(seed: 2)
        authorization.withUnsafeBytes { auth in
            for _ in benchmark.scaledIterations {
                blackHole(snapshot.decide(authorization: auth, pinned: nil, random: random.next()))
            }
        }
    }
    Benchmark("RouteDecisionPinned", configuration: .init(scalingFactor: .kilo)) { benchmark in
        authorization.withUnsafeBytes { auth in
            pinned.withUnsafeBytes { pin in
                for _ in benchmark.scaledIterations {
                    blackHole(snapshot.decide(authorization: auth, pinned: pin, random: 0))
                }
            }
        }
    }

    // Authentication must cost the same with one token as with 100,000 (and so must a wrong
    // guess): compare the p90s of these two.
    let presented = Array("token-77777".utf8)
    for count in [1, 100_000] {
        let tokens = TokenSet(tokens: (0..<count).map { "token-\($0 == 0 ? 77777 : $0)" })
        Benchmark("TokenLookup\(count)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            presented.withUnsafeBytes { token in
                for _ in benchmark.scaledIterations {
                    blackHole(tokens.contains(token))
                }
            }
        }
    }

    // The worker checks deadlines by scanning its registrations every 100 ms: this is one scan
    // of 10,000 connections, none due. Per request a deadline is one store; a timing wheel
    // would make the store dearer to make this cheaper.
    let scanned = DeadlineScan(connections: 10_000)
    Benchmark("DeadlineScan10k", configuration: .init(scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(scanned.due(now: 1_000))
        }
    }

    Benchmark(
        "KeepAliveRequestThroughProxy",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 20_000)
    ) { benchmark in
        let client = EndToEnd.shared.client
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            client.roundTrip()
        }
        benchmark.stopMeasurement()
    }

    Benchmark(
        "H2StreamThroughProxy",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 20_000)
    ) { benchmark in
        let client = EndToEnd.shared.h2Client
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            client.roundTrip()
        }
        benchmark.stopMeasurement()
    }
}

/// A registration table shaped like a worker's: listeners, then connections with deadlines.
final class DeadlineScan: @unchecked Sendable {
    final class Connection {
        var deadline: UInt64
        init(deadline: UInt64) { self.deadline = deadline }
    }

    enum Entry {
        case listener(Int32)
        case connection(Connection)
    }

    var table = RegistrationTable<Entry>(capacity: 10_100)

    init(connections: Int) {
        _ = table.insert(.listener(3))
        for index in 0..<connections { _ = table.insert(.connection(Connection(deadline: 60_000 + UInt64(index)))) }
    }

    func due(now: UInt64) -> Int {
        var due = 0
        table.forEach { entry in
            if case .connection(let connection) = entry, connection.deadline != 0, connection.deadline <= now { due += 1 }
        }
        return due
    }
}
