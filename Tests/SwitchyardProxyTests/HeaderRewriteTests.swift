import SwitchyardHTTP
import SwitchyardIO
import Testing
@testable import SwitchyardProxy

@Suite struct HeaderRewriteTests {
    private static let connectionFields: [KnownHeader] = [.connection, .keepAlive, .proxyConnection, .proxyAuthorization]

    @Test func fieldsThatDescribeOneConnectionNeverGoOnInEitherDirection() {
        for kind in Self.connectionFields {
            for toHTTP2 in [false, true] {
                #expect(HeaderRewrite.request(kind, toHTTP2: toHTTP2) == .drop, "\(kind) request")
                #expect(HeaderRewrite.response(kind, toHTTP2: toHTTP2) == .drop, "\(kind) response")
            }
        }
    }

    @Test func theProxyWritesItsOwnForwardingAndVersionFields() {
        for toHTTP2 in [false, true] {
            #expect(HeaderRewrite.request(.forwardedProto, toHTTP2: toHTTP2) == .drop)
            #expect(HeaderRewrite.request(.forwardedHost, toHTTP2: toHTTP2) == .drop)
            #expect(HeaderRewrite.request(.forwardedFor, toHTTP2: toHTTP2) == .hop)
            #expect(HeaderRewrite.request(.authorization, toHTTP2: toHTTP2) == .authorization)
            #expect(HeaderRewrite.response(.anyscaleVersion, toHTTP2: toHTTP2) == .drop)
            // The pin goes on: the backend may log which version was asked for.
            #expect(HeaderRewrite.request(.anyscaleVersion, toHTTP2: toHTTP2) == .copy)
        }
    }

    @Test func teGoesOnOnlyToHTTP2WhereGRPCNeedsIt() {
        #expect(HeaderRewrite.request(.te, toHTTP2: true) == .copy)
        #expect(HeaderRewrite.request(.te, toHTTP2: false) == .drop)
        #expect(HeaderRewrite.response(.te, toHTTP2: false) == .drop)
    }

    @Test func framingIsTheOutgoingWritersAndHTTP1FramingNeverReachesAnHTTP2Client() {
        for kind: KnownHeader in [.host, .contentLength, .transferEncoding, .upgrade] {
            #expect(HeaderRewrite.request(kind, toHTTP2: false) == .framing)
        }
        #expect(HeaderRewrite.response(.transferEncoding, toHTTP2: true) == .drop)
        #expect(HeaderRewrite.response(.upgrade, toHTTP2: true) == .drop)
        #expect(HeaderRewrite.response(.transferEncoding, toHTTP2: false) == .framing)
        #expect(HeaderRewrite.response(.contentLength, toHTTP2: true) == .copy)
    }

    @Test func everyKindHasARuleBothWays() {
        // A new KnownHeader must be placed deliberately: .other is the only plain end-to-end kind
        // besides the few listed.
        let copied = KnownHeader.allCases.filter { HeaderRewrite.request($0, toHTTP2: false) == .copy }
        #expect(Set(copied) == [.other, .expect, .anyscaleVersion, .requestID])
    }

    private func forwarding(_ spelling: HeaderRewrite.Spelling, hops: [String], tls: Bool, requestID: RequestID?) -> String {
        let out = ByteBuffer(capacity: 512)
        let host = Array("api.example:8443".utf8)
        host.withUnsafeBytes { host in
            HeaderRewrite.writeForwarding(
                into: out, spelling,
                priorHops: { body in for hop in hops { Array(hop.utf8).withUnsafeBytes(body) } },
                client: Array("127.0.0.1".utf8), tls: tls, host: host, requestID: requestID)
        }
        return String(decoding: out.readableBytes, as: UTF8.self)
    }

    @Test func everyEarlierHopIsKeptInOrderBeforeThisClient() {
        #expect(forwarding(.http1, hops: ["10.0.0.1", "", "10.0.0.2, 10.0.0.3"], tls: false, requestID: nil) == """
            X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r
            X-Forwarded-Proto: http\r
            X-Forwarded-Host: api.example:8443\r

            """)
    }

    @Test func http2SpellsTheSameFieldsInLowercaseWithTheRequestID() {
        #expect(forwarding(.http2, hops: ["10.0.0.1"], tls: true, requestID: RequestID(high: 1, low: 255)) == """
            x-forwarded-for: 10.0.0.1, 127.0.0.1\r
            x-forwarded-proto: https\r
            x-forwarded-host: api.example:8443\r
            x-request-id: 000000000000000100000000000000ff\r

            """)
    }

    @Test func http1SpellsTheRequestIDAsItsHeadsCustomarilyDo() {
        #expect(forwarding(.http1, hops: [], tls: false, requestID: RequestID(high: 0xab, low: 2)).hasSuffix("""
            X-Request-Id: 00000000000000ab0000000000000002\r

            """))
        let field = RequestID(high: 0xab, low: 2).field
        #expect(String(decoding: field.name, as: UTF8.self) == "x-request-id")
        #expect(String(decoding: field.value, as: UTF8.self) == "00000000000000ab0000000000000002")
    }

    @Test func trailersCarryNothingThatFramesRoutesOrAuthenticates() {
        for name in ["content-length", "Authorization", "x-anyscale-version", "Cookie", "set-cookie", "forwarded", "x-request-id", "te"] {
            #expect(!Array(name.utf8).withUnsafeBytes(HeaderRewrite.mayForwardTrailer(name:)), "\(name)")
        }
        #expect(Array("x-checksum".utf8).withUnsafeBytes(HeaderRewrite.mayForwardTrailer(name:)))
    }
}
