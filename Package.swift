// swift-tools-version: 6.1
import PackageDescription

// The request path lives in worker-confined classes; Swift's dynamic exclusivity checks on
// their properties cost more than the rest of the proxy's user-space work: 39,400 instructions
// per keep-alive request with them, 14,900 without (callgrind, Benchmarks/callgrind, measured
// again after the Exchange and state-machine restructure). So release builds check
// exclusivity statically only; debug builds and the sanitizer builds keep the dynamic checks.
let hotPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "switchyard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchyard", targets: ["switchyard"]),
        // For the micro benchmarks in Benchmarks/micro; not a stable API.
        .library(name: "SwitchyardCore", targets: ["SwitchyardIO", "SwitchyardHTTP", "SwitchyardRouting", "SwitchyardProxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C headers and tiny inline helpers for Linux syscalls Glibc's module map leaves out.
        .target(name: "CLinuxShims"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),

        .target(name: "SwitchyardIO", dependencies: ["CLinuxShims"], swiftSettings: hotPathSettings),
        .target(name: "SwitchyardHTTP", swiftSettings: hotPathSettings),
        .target(name: "SwitchyardRouting", swiftSettings: hotPathSettings),
        .target(name: "SwitchyardTLS", dependencies: ["SwitchyardIO", "COpenSSL"], swiftSettings: hotPathSettings),
        .target(name: "SwitchyardHTTP2", dependencies: ["CNGHTTP2"], swiftSettings: hotPathSettings),
        // Writing versions files: deploys, reverts, their history (the CLI and the admin API).
        .target(name: "SwitchyardDeploy", dependencies: ["SwitchyardIO", "SwitchyardHTTP", "SwitchyardRouting", .product(name: "Yams", package: "Yams")]),
        .target(
            name: "SwitchyardProxy",
            dependencies: [
                "SwitchyardIO", "SwitchyardHTTP", "SwitchyardHTTP2", "SwitchyardRouting", "SwitchyardTLS", "SwitchyardDeploy",
                "CLinuxShims", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "switchyard",
            dependencies: [
                "SwitchyardProxy", "SwitchyardRouting", "SwitchyardDeploy", "SwitchyardHTTP", "SwitchyardHTTP2", "SwitchyardIO", "SwitchyardTLS",
                "COpenSSL", "CNGHTTP2",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // What the unit tests share: seeded random, a scripted transport, a manual clock.
        .target(name: "SwitchyardTesting", dependencies: ["SwitchyardIO"]),

        .testTarget(name: "SwitchyardIOTests", dependencies: ["SwitchyardIO"]),
        .testTarget(name: "SwitchyardHTTPTests", dependencies: ["SwitchyardHTTP"]),
        .testTarget(name: "SwitchyardRoutingTests", dependencies: ["SwitchyardRouting"]),
        .testTarget(name: "SwitchyardDeployTests", dependencies: ["SwitchyardDeploy", "SwitchyardRouting"]),
        .testTarget(name: "SwitchyardTLSTests", dependencies: ["SwitchyardTLS"]),
        .testTarget(name: "SwitchyardHTTP2Tests", dependencies: ["SwitchyardHTTP2", "CNGHTTP2"]),
        .testTarget(name: "SwitchyardProxyTests", dependencies: ["SwitchyardProxy", "SwitchyardHTTP", "SwitchyardIO", "SwitchyardTesting"]),
    ]
)
