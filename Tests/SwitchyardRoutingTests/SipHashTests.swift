import Testing
@testable import SwitchyardRouting

@Suite struct SipHashTests {
    /// The reference test vectors of SipHash-2-4 (key 00 01 … 0f, message 00 01 … n-1), from
    /// the authors' `vectors.h`.
    @Test(arguments: [(0, 0x726f_db47_dd0e_0e31 as UInt64), (1, 0x74f8_39c5_93dc_67fd), (15, 0xa129_ca61_49be_45e5)])
    func matchesTheReferenceVectors(length: Int, expected: UInt64) {
        let key: (UInt64, UInt64) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
        let message = (0..<length).map { UInt8($0) }
        let hash = message.withUnsafeBytes { SipHash.hash($0, key: key, compressionRounds: 2, finalizationRounds: 4) }
        #expect(hash == expected)
    }

    @Test func theKeyChangesEveryHash() {
        let message = Array("token-1".utf8)
        let a = message.withUnsafeBytes { SipHash.hash($0, key: (1, 2)) }
        let b = message.withUnsafeBytes { SipHash.hash($0, key: (1, 3)) }
        #expect(a != b)
    }
}
