/// libFuzzer target: a health probe's answer as a hostile backend may send it, read the way
/// the prober does (after each arrival, then at the close), and the endpoint health machine
/// fed the verdicts.
///
/// It must never trap, the close always brings a verdict, and the machine only ever reports a
/// state it is now in, taking requests exactly when HEALTHY or UNKNOWN.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProbeAnswer(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let step = max(1, Int(bytes[0]))
    let thresholds = HealthThresholds(healthy: Int(bytes[1] % 4) + 1, unhealthy: Int(bytes[1] / 64) + 1)
    let input = Array(UnsafeBufferPointer(start: bytes + 2, count: size - 2))
    var verdict: ProbeResult?
    var received: [UInt8] = []
    var offset = 0
    while offset < input.count, verdict == nil {
        let end = min(offset + step, input.count)
        received += input[offset..<end]
        offset = end
        verdict = ProbeAnswer.evaluate(received, closed: false)
    }
    let final = verdict ?? ProbeAnswer.evaluate(received, closed: true)
    precondition(final != nil, "the close must bring a verdict")
    var health = EndpointHealth()
    for byte in input.prefix(64) {
        let result: ProbeResult = switch byte % 3 {
        case 0: .healthy
        case 1: .draining
        default: final!
        }
        if let changed = health.record(result, thresholds: thresholds, at: nil) {
            precondition(changed == health.state)
        }
        precondition(health.takesRequests == (health.state == .healthy || health.state == .unknown))
    }
    return 0
}
