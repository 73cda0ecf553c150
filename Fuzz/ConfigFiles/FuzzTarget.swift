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
