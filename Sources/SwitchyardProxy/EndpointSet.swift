import SwitchyardRouting

/// A set of endpoint indexes of one version, stored inline (no allocation per request).
///
/// Versions are capped at `VersionsConfig.maxEndpoints` resolved endpoints when the versions
/// file is loaded, so every index fits.
struct EndpointSet: Equatable {
    static let capacity = VersionsConfig.maxEndpoints
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    func contains(_ index: Int) -> Bool {
        precondition(index >= 0 && index < Self.capacity)
        let bit = UInt64(1) << UInt64(index & 63)
        switch index >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    mutating func insert(_ index: Int) {
        precondition(index >= 0 && index < Self.capacity)
        let bit = UInt64(1) << UInt64(index & 63)
        switch index >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    var count: Int { words.0.nonzeroBitCount + words.1.nonzeroBitCount + words.2.nonzeroBitCount + words.3.nonzeroBitCount }

    static func == (lhs: EndpointSet, rhs: EndpointSet) -> Bool {
        lhs.words == rhs.words
    }
}
