// swift-tools-version: 6.1
import PackageDescription

// Micro benchmarks (ordo-one/benchmark), a package of their own so the main build and
// `make test` stay free of the benchmark tooling. See `make micro-bench`.

// A path dependency's identity is its directory's name, which depends on where the
// repository was cloned: derive it.
let switchyardIdentity = Context.packageDirectory
    .split(separator: "/").dropLast(2).last.map { $0.lowercased() } ?? "switchyard"

let package = Package(
    name: "switchyard-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "SwitchyardBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SwitchyardCore", package: switchyardIdentity),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/SwitchyardBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
