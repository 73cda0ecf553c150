import SwitchyardIO
import Testing
@testable import SwitchyardProxy

@Suite struct ErrorRendererTests {
    private func render(_ error: ProxyError, _ message: String, _ context: ErrorRenderer.Context) -> String {
        let out = ByteBuffer(capacity: 512)
        ErrorRenderer.http1(error, message: message, context: context, into: out)
        return String(decoding: out.readableBytes, as: UTF8.self)
    }

    @Test func anAnswerCarriesTheVersionTheRequestIdAndAnExactLength() {
        let text = render(
            .upstreamTimeout, "the backend did not answer \"in time\"",
            .init(versionLine: Array("X-ANYSCALE-VERSION: v2\r\n".utf8), requestID: RequestID(high: 1, low: 2), close: false))
        guard let end = text.firstRange(of: "\r\n\r\n") else {
            Issue.record("no end of head")
            return
        }
        let (head, body) = (String(text[..<end.lowerBound]) + "\r\n", String(text[end.upperBound...]))
        #expect(head.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
        #expect(head.contains("\r\nX-ANYSCALE-VERSION: v2\r\n"))
        #expect(head.contains("\r\nX-Request-Id: 00000000000000010000000000000002"))
        #expect(!head.contains("Connection: close"))
        #expect(head.contains("Content-Length: \(body.utf8.count)\r\n"))
        #expect(body == "{\"error\":{\"code\":\"upstream_timeout\",\"message\":\"the backend did not answer \\\"in time\\\"\"}}\n")
    }

    @Test func unauthorizedSaysHowToAuthenticateAndCloses() {
        let missing = render(.missingToken, "m", .init(close: true))
        #expect(missing.contains("WWW-Authenticate: Bearer realm=\"switchyard\"\r\n"))
        #expect(missing.contains("Connection: close\r\n\r\n"))
        #expect(missing.contains("\"code\":\"unauthorized\""))
        let invalid = render(.invalidToken, "m", .init(close: true))
        #expect(invalid.contains("error=\"invalid_token\""))
        #expect(render(.tooManyConnections, "m", .init(close: true)).contains("Retry-After: 1\r\n"))
    }
}
