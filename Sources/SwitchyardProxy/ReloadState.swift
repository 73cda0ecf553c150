import Glibc
import SwitchyardIO
import SwitchyardRouting

/// The control thread's record of what is loaded: the last good content of each hot file and
/// the outcome of the last reload, for `/status`.
struct ReloadState {
    struct Outcome {
        var time: String
        var trigger: String
        /// "ok" (published), "unchanged" (same content) or "error" (last good kept).
        var result: String
        var errors: [String]
    }

    var generation: UInt64 = 0
    var versions: VersionsConfig
    var versionsBytes: [UInt8]
    var targets: [[SocketAddress]]
    /// The addresses of each version's `grpc_endpoints`.
    var grpcTargets: [[SocketAddress]]
    /// The endpoint host of each target, for TLS backends.
    var serverNames: [[String]]
    /// CA bundles and upstream tokens the versions name.
    private(set) var upstreamFiles: UpstreamFiles
    /// Endpoints left out because their names did not resolve (shown in `/status`).
    var unresolved: [String]
    var tokens: TokenSet?
    var tokensBytes: [UInt8]
    var lastOutcome: Outcome {
        didSet { rejectedSince = lastOutcome.result == "error" ? rejectedSince ?? lastOutcome.time : nil }
    }
    /// Since when the files on disk have been rejected (the first failed reload after the last
    /// good one): the running config is older than the files from then on.
    private(set) var rejectedSince: String?
    var failedReloads = 0
    /// Endpoint health, and the routing it led to in the last publication.
    private(set) var health = HealthBook()
    private(set) var publishedRouting: HealthRouting?
    /// Each version's `created_at` from the file, or when this process first saw it (RFC 3339).
    private(set) var createdAt: [String: String] = [:]
    /// Reloads per hot file and result, for `/metrics`.
    private(set) var reloadCounts = ReloadCounts()

    struct ReloadCounts {
        enum File: Int, CaseIterable {
            case versions, tokens
            var label: String { self == .versions ? "versions" : "tokens" }
        }

        enum Result: Int, CaseIterable {
            case ok, unchanged, error
            var label: String { ["ok", "unchanged", "error"][rawValue] }
        }

        private var counts = [UInt64](repeating: 0, count: File.allCases.count * Result.allCases.count)

        subscript(file: File, result: Result) -> UInt64 {
            get { counts[file.rawValue * Result.allCases.count + result.rawValue] }
            set { counts[file.rawValue * Result.allCases.count + result.rawValue] = newValue }
        }
    }
    /// A versions file that reads valid and differs from the one routed with: its endpoint
    /// names are being resolved (on the resolver thread) before it is published.
    private(set) var pendingVersions: PendingVersions?

    struct PendingVersions {
        let versions: VersionsConfig
        let bytes: [UInt8]
        let trigger: String
    }

    /// Loads both files for the first time; failures here stop the start.
    init(loader: ConfigLoader) throws(LoadError) {
        let (versions, versionsBytes) = try loader.loadVersions()
        self.versions = versions
        self.versionsBytes = versionsBytes
        let resolution = try loader.resolve(versions)
        self.targets = resolution.targets
        self.grpcTargets = resolution.grpcTargets
        self.serverNames = resolution.serverNames
        self.unresolved = resolution.unresolved
        self.upstreamFiles = UpstreamFiles(versionsPath: loader.versionsPath)
        _ = try upstreamFiles.load(versions)
        let tokens = try loader.loadTokens()
        self.tokens = tokens?.tokens
        self.tokensBytes = tokens?.bytes ?? []
        self.lastOutcome = Outcome(time: Self.timestamp(), trigger: "startup", result: "ok", errors: [])
    }

    /// Takes the addresses a re-resolution found for the current versions; a publication if
    /// they differ from the ones routed with.
    mutating func apply(_ resolution: ConfigLoader.Resolution) -> Publication? {
        guard resolution.targets != targets || resolution.grpcTargets != grpcTargets || resolution.unresolved != unresolved
            || resolution.serverNames != serverNames else { return nil }
        take(resolution)
        return publish()
    }

    /// Routes with the addresses of `resolution` from now on.
    private mutating func take(_ resolution: ConfigLoader.Resolution) {
        targets = resolution.targets
        grpcTargets = resolution.grpcTargets
        serverNames = resolution.serverNames
        unresolved = resolution.unresolved
    }

    /// Builds the next publication from the current state.
    mutating func publish() -> Publication {
        generation += 1
        for version in versions.versions {
            if let written = version.createdAt {
                createdAt[version.name] = written
            } else if createdAt[version.name] == nil {
                createdAt[version.name] = Self.timestamp()
            }
        }
        health.sync(versions, targets: targets, grpcTargets: grpcTargets)
        let routing = health.routing(versions, targets: targets, grpcTargets: grpcTargets)
        publishedRouting = routing
        let snapshot = RoutingSnapshot(generation: generation, config: versions, tokens: tokens, plan: routing.plan)
        return Publication(
            snapshot: snapshot, targets: targets, health: routing, upstreams: upstreamFiles.upstreams(versions, serverNames: serverNames),
            grpcTargets: grpcTargets)
    }

    /// Each version's state in the last publication, in the order of `versions`.
    var routingStates: [TrafficPlan.VersionState]? { publishedRouting?.plan.states }

    /// Applies a probe result (or a worker's failed connect, as a failure) to an endpoint of
    /// the current versions: its new state when it changed, and a publication when that changes
    /// what the workers route with.
    mutating func recordHealth(
        _ result: ProbeResult, for key: HealthBook.Key, at time: String?
    ) -> (changed: EndpointHealth.State?, publication: Publication?) {
        guard let version = versions.versions.first(where: { $0.name == key.version }), let check = version.healthCheck else { return (nil, nil) }
        let changed = health.record(result, for: key, check: check, at: time)
        guard changed != nil, health.routing(versions, targets: targets, grpcTargets: grpcTargets) != publishedRouting else { return (changed, nil) }
        return (changed, publish())
    }

    /// Re-reads both files. Returns a publication if anything valid changed, except a versions
    /// file that names hosts: that one becomes `pendingVersions` (`resolve` is set) and is
    /// published once its names are resolved (`versionsResolved`). An invalid file keeps its last good content; the other
    /// file still reloads.
    ///
    /// With `tentative`, a failure is not recorded (no outcome, no count) and `failed` is set:
    /// the caller reads again after a short settle, since a file rewritten in place may have
    /// been read while its next writer had just truncated it.
    mutating func reload(
        loader: ConfigLoader, trigger: String, tentative: Bool = false, failed: inout Bool, resolve: inout Bool
    ) -> Publication? {
        var changed = false
        var errors: [String] = []
        var versionsResult = ReloadCounts.Result.unchanged
        var tokensResult = ReloadCounts.Result.unchanged
        resolve = false
        do {
            let (versions, bytes) = try loader.loadVersions()
            if bytes == versionsBytes {
                pendingVersions = nil  // changed back before its names resolved
                // The CA bundles and tokens it names may have changed on their own.
                if try upstreamFiles.load(versions) {
                    changed = true
                    versionsResult = .ok
                }
            } else if !loader.needsLookup(versions) {
                // Numeric addresses only: nothing to wait for, published at once.
                let resolution = try loader.resolve(versions)
                _ = try upstreamFiles.load(versions)
                pendingVersions = nil
                self.versions = versions
                self.versionsBytes = bytes
                take(resolution)
                changed = true
                versionsResult = .ok
            } else if bytes != pendingVersions?.bytes {
                pendingVersions = PendingVersions(versions: versions, bytes: bytes, trigger: trigger)
                resolve = true
            }
        } catch {
            errors.append(contentsOf: error.description.split(separator: "\n").map(String.init))
            versionsResult = .error
        }
        do {
            if let (tokens, bytes) = try loader.loadTokens(), bytes != tokensBytes {
                self.tokens = tokens
                self.tokensBytes = bytes
                changed = true
                tokensResult = .ok
            }
        } catch {
            errors.append(contentsOf: error.description.split(separator: "\n").map(String.init))
            tokensResult = .error
        }
        failed = !errors.isEmpty
        if failed && tentative { return changed ? publish() : nil }
        if !errors.isEmpty { failedReloads += 1 }
        // A versions file waiting for its names is counted when they resolve.
        if !resolve { reloadCounts[.versions, versionsResult] += 1 }
        reloadCounts[.tokens, tokensResult] += 1
        // A versions change is reported when its names have resolved.
        if !resolve || !errors.isEmpty || changed {
            lastOutcome = Outcome(
                time: Self.timestamp(), trigger: trigger, result: errors.isEmpty ? (changed || resolve ? "ok" : "unchanged") : "error",
                errors: errors)
        }
        return changed ? publish() : nil
    }

    /// The resolver's answer for `pendingVersions`: published, or rejected with the reason
    /// (the last good versions stay).
    mutating func versionsResolved(_ result: Result<ConfigLoader.Resolution, LoadError>) -> Publication? {
        guard let pending = pendingVersions else { return nil }
        pendingVersions = nil
        var result = result
        if case .success = result {
            do { _ = try upstreamFiles.load(pending.versions) } catch { result = .failure(error) }
        }
        switch result {
        case .success(let resolution):
            versions = pending.versions
            versionsBytes = pending.bytes
            take(resolution)
            lastOutcome = Outcome(time: Self.timestamp(), trigger: pending.trigger, result: "ok", errors: [])
            reloadCounts[.versions, .ok] += 1
            return publish()
        case .failure(let error):
            failedReloads += 1
            reloadCounts[.versions, .error] += 1
            lastOutcome = Outcome(
                time: Self.timestamp(), trigger: pending.trigger, result: "error",
                errors: error.description.split(separator: "\n").map(String.init))
            return nil
        }
    }

    /// The current UTC time as RFC 3339 with milliseconds.
    static func timestamp() -> String { Timestamp.now() }
}
