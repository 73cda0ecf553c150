import SwitchyardHTTP2
import Testing
@testable import SwitchyardProxy

@Suite struct GRPCTests {
    private func timeout(_ text: String) -> UInt64? {
        Array(text.utf8).withUnsafeBytes { GRPC.timeoutMs($0) }
    }

    private func isGRPC(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { GRPC.isGRPC(contentType: $0) }
    }

    @Test func timeoutsInEveryUnitRoundUpToMilliseconds() {
        #expect(timeout("1H") == 3_600_000)
        #expect(timeout("2M") == 120_000)
        #expect(timeout("3S") == 3000)
        #expect(timeout("250m") == 250)
        #expect(timeout("1500u") == 2)
        #expect(timeout("1n") == 1)
        #expect(timeout("99999999S") == 99_999_999_000)
    }

    @Test(arguments: ["", "S", "100", "1s", "123456789S", "-1S", " 1S", "1.5S"])
    func malformedTimeoutsAreIgnored(text: String) {
        #expect(timeout(text) == nil)
    }

    @Test func backendStatusesAreReadAndOddOnesAreUnknown() {
        let code = { (text: String) in Array(text.utf8).withUnsafeBytes { GRPC.statusCode($0) } }
        #expect(code("0") == 0)
        #expect(code("5") == 5)
        #expect(code("16") == 16)
        for odd in ["", "17", "99", "007", "-1", "a", " 1"] { #expect(code(odd) == 2, "\(odd)") }
    }

    @Test func grpcContentTypesAreRecognised() {
        #expect(isGRPC("application/grpc"))
        #expect(isGRPC("application/grpc+proto"))
        #expect(isGRPC("Application/GRPC;charset=utf-8"))
        #expect(!isGRPC("application/grpc-web"))
        #expect(!isGRPC("application/json"))
        #expect(!GRPC.isGRPC(contentType: nil))
    }

    @Test func everyProxyErrorHasTheStatusAClientCanActOn() {
        #expect(GRPC.status(.missingToken) == 16 && GRPC.status(.invalidToken) == 16)
        #expect(GRPC.status(.unknownVersion) == 5)
        #expect(GRPC.status(.malformedRequest) == 3)
        #expect(GRPC.status(.versionUnavailable) == 14 && GRPC.status(.upstreamConnectFailed) == 14)
        #expect(GRPC.status(.upstreamTimeout) == 4)
        for error in ProxyError.allCases {
            #expect((1...16).contains(GRPC.status(error)), "\(error) maps to a real non-OK status")
        }
    }

    @Test func messagesArePercentEncoded() {
        #expect(GRPC.percentEncoded("no version named \"v9\"; 100% sure") == Array("no version named \"v9\"; 100%25 sure".utf8))
        #expect(GRPC.percentEncoded("é\n") == Array("%C3%A9%0A".utf8))
    }

    @Test func aTrailersOnlyAnswerCarriesStatusMessageVersionAndRequestID() {
        let fields = GRPC.trailersOnly(.unknownVersion, message: "no version", version: Array("v2".utf8), requestID: RequestID(high: 1, low: 2))
        #expect(fields.first == H2Field("content-type", "application/grpc"))
        #expect(fields.contains(H2Field("grpc-status", "5")))
        #expect(fields.contains(H2Field("grpc-message", "no version")))
        #expect(fields.contains(H2Field("x-anyscale-version", "v2")))
        #expect(fields.contains(H2Field("x-request-id", "00000000000000010000000000000002")))
    }
}
