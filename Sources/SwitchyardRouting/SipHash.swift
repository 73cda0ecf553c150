/// SipHash (Aumasson and Bernstein), the keyed hash behind Swift's `Hasher`, written out so the
/// key is ours and nothing generic runs per request: a token lookup hashes once per request,
/// and `Hasher` spent more on its buffering and its key words than on the rounds.
///
/// Tokens use SipHash-1-3 (as `Hasher` does); the round counts are parameters so that the
/// published SipHash-2-4 test vectors can check the implementation.
enum SipHash {
    // Inlined so that the round counts are constants and the round loops unroll.
    @inline(__always)
    static func hash(
        _ bytes: UnsafeRawBufferPointer, key: (UInt64, UInt64), compressionRounds: Int = 1, finalizationRounds: Int = 3
    ) -> UInt64 {
        var v0 = key.0 ^ 0x736f_6d65_7073_6575
        var v1 = key.1 ^ 0x646f_7261_6e64_6f6d
        var v2 = key.0 ^ 0x6c79_6765_6e65_7261
        var v3 = key.1 ^ 0x7465_6462_7974_6573

        @inline(__always)
        func rounds(_ count: Int) {
            for _ in 0..<count {
                v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
                v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
                v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
                v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
            }
        }

        let count = bytes.count
        var index = 0
        while index + 8 <= count {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            v3 ^= word
            rounds(compressionRounds)
            v0 ^= word
            index += 8
        }
        var last = UInt64(truncatingIfNeeded: count) << 56
        var shift: UInt64 = 0
        while index < count {
            last |= UInt64(bytes[index]) << shift
            shift += 8
            index += 1
        }
        v3 ^= last
        rounds(compressionRounds)
        v0 ^= last
        v2 ^= 0xff
        rounds(finalizationRounds)
        return v0 ^ v1 ^ v2 ^ v3
    }
}

extension UInt64 {
    @inline(__always)
    fileprivate func rotatedLeft(_ count: UInt64) -> UInt64 { self << count | self >> (64 - count) }
}
