/// libFuzzer target: the hot and static configuration files (versions.json, switchyard.json,
/// the tokens file) and the JSON parser under them, on hostile bytes.
///
/// Every input must end in a value or a `ConfigError` (never a trap), an error must name the
/// file and a position inside it, and an accepted versions file must satisfy what routing
/// relies on: 1–10 versions, weights summing to 100 %, 1–256 endpoints each.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigFiles(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: bytes + 1, count: size - 1))
    switch bytes[0] % 4 {
    case 0:
        check { () throws(ConfigError) in try JSONParser.parse(input, file: "f.json") }
    case 1:
        if let config = check({ () throws(ConfigError) in try VersionsConfig.parse(input, file: "versions.json") }) {
            precondition((1...10).contains(config.versions.count))
            precondition(config.versions.reduce(0) { $0 + $1.trafficBasisPoints } == 10_000)
            precondition(config.versions.allSatisfy { (1...VersionsConfig.maxEndpoints).contains($0.endpoints.count) })
            checkPlans(config, seed: bytes[0])
        }
    case 2:
        check { () throws(ConfigError) in try ServerConfig.parse(input, file: "switchyard.json") }
    default:
        if let tokens = check({ () throws(ConfigError) in try TokenSet.parse(input, file: "tokens.txt") }) {
            precondition(tokens.count > 0)
        }
    }
    return 0
}

/// Every combination of version states (up to 3^10) is too many: a few derived from the seed
/// byte, each checked for what the sampler and the workers rely on.
private func checkPlans(_ config: VersionsConfig, seed: UInt8) {
    let all: [TrafficPlan.VersionState] = [.starting, .running, .unhealthy]
    var value = Int(seed)
    for round in 0..<8 {
        let states = config.versions.indices.map { index in all[(value >> (index % 8) &+ index &+ round) % 3] }
        value = value &* 31 &+ 7
        let plan = TrafficPlan(config: config, states: states)
        precondition(plan.weights.reduce(0, +) == 10_000 && plan.weights.allSatisfy { $0 >= 0 })
        for index in config.versions.indices {
            precondition(plan.effective[index] <= plan.weights[index])
            precondition(!plan.isUnavailable(index) || states[index] == .unhealthy)
        }
        _ = WeightedSampler(weights: plan.weights)
    }
}

@discardableResult
func check<T>(_ parse: () throws(ConfigError) -> T) -> T? {
    do {
        return try parse()
    } catch {
        precondition(error.description.hasPrefix(error.file), "an error must name its file: \(error.description)")
        if let position = error.position {
            precondition(position.line >= 1 && position.column >= 1, "a position must be 1-based: \(error.description)")
        }
        return nil
    }
}
