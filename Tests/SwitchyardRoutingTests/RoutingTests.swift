import Testing
@testable import SwitchyardRouting

@Suite struct WeightedSamplerTests {
    @Test func tableHoldsExactlyTheWeights() {
        let weights = [3000, 0, 6999, 1]
        let sampler = WeightedSampler(weights: weights)
        var counts = [0, 0, 0, 0]
        // Walk every slot once: slot i is hit by random = ceil(i * 2^32 / 10000).
        for slot in 0..<WeightedSampler.resolution {
            let random = (UInt64(slot) << 32 + UInt64(WeightedSampler.resolution) - 1) / UInt64(WeightedSampler.resolution)
            counts[sampler.pick(random)] += 1
        }
        #expect(counts == weights)
    }

    @Test func randomPicksFollowTheSplit() {
        let sampler = WeightedSampler(weights: [3000, 7000])
        var random = FastRandom(seed: 42)
        var first = 0
        let draws = 100_000
        for _ in 0..<draws where sampler.pick(random.next()) == 0 { first += 1 }
        // Binomial(100000, 0.3): sigma = 145; 4 sigma = 580.
        #expect(abs(first - 30_000) < 580)
    }
}

@Suite struct TokenSetTests {
    @Test func parsesCommentsAndBlankLines() throws {
        let tokens = try TokenSet.parse(Array("# comment\n\n  alpha  \nbeta\nalpha\n".utf8), file: "tokens.txt")
        #expect(tokens.count == 2)
        #expect(Array("alpha".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(Array("beta".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(!Array("alph".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(!Array("alphaa".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(!Array("".utf8).withUnsafeBytes { tokens.contains($0) })
    }

    @Test func rejectsEmptyFilesAndBadTokens() {
        #expect(throws: ConfigError.self) { try TokenSet.parse(Array("# only comments\n".utf8), file: "t") }
        do {
            _ = try TokenSet.parse(Array("good\nbad token\n".utf8), file: "tokens.txt")
            Issue.record("a token with a space was accepted")
        } catch {
            #expect(error.description.hasPrefix("tokens.txt:2:4:"), "the column of the space")
        }
    }

    @Test func acceptsCRLFLineEnds() throws {
        let tokens = try TokenSet.parse(Array("# comment\r\nalpha\r\n\r\nbeta\r\n".utf8), file: "tokens.txt")
        #expect(tokens.count == 2)
        #expect(Array("alpha".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(Array("beta".utf8).withUnsafeBytes { tokens.contains($0) })
    }

    @Test func manyTokensAreEachFoundAndNothingElse() throws {
        let text = (0..<100_000).map { "token-\($0)" }.joined(separator: "\n")
        let tokens = try TokenSet.parse(Array(text.utf8), file: "tokens.txt")
        #expect(tokens.count == 100_000)
        for index in stride(from: 0, to: 100_000, by: 997) {
            #expect(Array("token-\(index)".utf8).withUnsafeBytes { tokens.contains($0) })
            #expect(Array("token-\(index)".utf8).withUnsafeBytes { tokens.contains(hash: TokenSet.hash($0)) })
        }
        #expect(!Array("token-100000".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(!Array("token-".utf8).withUnsafeBytes { tokens.contains($0) })
        #expect(tokens.deepCopy() == tokens)
    }

    @Test func bearerSchemeIsCaseInsensitive() {
        func token(_ value: String) -> String? {
            Array(value.utf8).withUnsafeBytes { bytes in
                TokenSet.bearerToken(in: bytes).map { String(decoding: $0, as: UTF8.self) }
            }
        }
        #expect(token("Bearer abc") == "abc")
        #expect(token("bearer   abc") == "abc")
        #expect(token("Basic abc") == nil)
        #expect(token("Bearer") == nil)
        #expect(token("Bearerabc") == nil)
    }
}

@Suite struct RouteDecisionTests {
    let snapshot = RoutingSnapshot(
        generation: 1,
        config: VersionsConfig(service: "s", versions: [
            .init(name: "v1", trafficBasisPoints: 10000, endpoints: [Endpoint(host: "h", port: 1)]),
            .init(name: "dark", trafficBasisPoints: 0, endpoints: [Endpoint(host: "h", port: 2)]),
        ]),
        tokens: TokenSet(tokens: ["secret"]))

    func decide(_ authorization: String?, _ pinned: String?) -> RouteDecision {
        let auth = authorization.map { Array($0.utf8) }
        let pin = pinned.map { Array($0.utf8) }
        return auth.withUnsafeBytesIfPresent { a in
            pin.withUnsafeBytesIfPresent { p in snapshot.decide(authorization: a, pinned: p, random: 12345) }
        }
    }

    @Test func authenticatesThenPinsOrSamples() {
        #expect(decide(nil, nil) == .unauthorized(.missing))
        #expect(decide("Bearer wrong", nil) == .unauthorized(.invalid))
        #expect(decide("Bearer secret", nil) == .sampled(0))
        #expect(decide("Bearer secret", "dark") == .pinned(1))
        #expect(decide("Bearer secret", "DARK") == .unknownVersion)
        #expect(decide("Bearer wrong", "dark") == .unauthorized(.invalid))
    }

    @Test func aWorkerCopyDecidesTheSame() {
        let copy = snapshot.workerCopy()
        #expect(copy !== snapshot)
        #expect(copy.generation == snapshot.generation)
        var random = FastRandom(seed: 3)
        for (auth, pin) in [("Bearer secret", nil), ("Bearer secret", "dark"), ("Bearer nope", nil), ("Bearer secret", "x")] {
            let value = random.next()
            let a = Array(auth.utf8), p = pin.map { Array($0.utf8) }
            a.withUnsafeBytes { authBytes in
                p.withUnsafeBytesIfPresent { pinBytes in
                    #expect(copy.decide(authorization: authBytes, pinned: pinBytes, random: value)
                        == snapshot.decide(authorization: authBytes, pinned: pinBytes, random: value))
                }
            }
        }
    }

    @Test func darkVersionsGetNoSampledTraffic() {
        var random = FastRandom(seed: 7)
        for _ in 0..<10_000 { #expect(snapshot.sampler.pick(random.next()) == 0) }
    }
}

extension Optional where Wrapped == [UInt8] {
    func withUnsafeBytesIfPresent<R>(_ body: (UnsafeRawBufferPointer?) -> R) -> R {
        switch self {
        case .some(let bytes): return bytes.withUnsafeBytes { body($0) }
        case .none: return body(nil)
        }
    }
}
