import Testing
@testable import SwitchyardHTTP

/// Parses `text` as one request head with default limits.
func parseRequest(_ text: String, limits: HeadLimits = HeadLimits()) -> (HeadParseStatus, RequestHead) {
    var parser = HeadParser(limits: limits)
    var head = RequestHead()
    let status = Array(text.utf8).withUnsafeBytes { parser.parseRequest($0, into: &head) }
    return (status, head)
}

func field(_ range: ByteRange?, in text: String) -> String? {
    guard let range else { return nil }
    let bytes = Array(text.utf8)
    return String(decoding: bytes[Int(range.start)..<Int(range.end)], as: UTF8.self)
}

@Suite struct RequestHeadTests {
    @Test func parsesASimpleGet() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: example\r\nAuthorization:  Bearer tok \r\nX-Anyscale-Version: v2\r\n\r\n"
        let (status, head) = parseRequest(text)
        #expect(status == .complete(length: text.utf8.count))
        #expect(field(head.method, in: text) == "GET")
        #expect(field(head.target, in: text) == "/a?b=1")
        #expect(field(head.host, in: text) == "example")
        #expect(field(head.authorization, in: text) == "Bearer tok")
        #expect(field(head.pinnedVersion, in: text) == "v2")
        #expect(head.framing == .none)
        #expect(head.keepAlive)
        #expect(head.fields.count == 3)
    }

    @Test func waitsForTheEndOfTheHead() {
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n").0 == .needMore)
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n\r").0 == .needMore)
    }

    @Test func findsTheEndAcrossIncrementalArrivals() {
        let text = Array("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".utf8)
        var parser = HeadParser(limits: HeadLimits())
        var head = RequestHead()
        var result = HeadParseStatus.needMore
        for end in 1...text.count {
            result = text[0..<end].withUnsafeBytes { parser.parseRequest($0, into: &head) }
            if result != .needMore { break }
        }
        #expect(result == .complete(length: text.count - 5))
        #expect(head.framing == .contentLength(5))
    }

    @Test func framingAndConnectionSemantics() {
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing == .chunked)
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").1.framing == .chunked)
        #expect(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n").1.framing == .contentLength(7))
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").1.keepAlive == false)
        #expect(parseRequest("GET / HTTP/1.0\r\nHost: a\r\n\r\n").1.keepAlive == false)
        #expect(parseRequest("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").1.keepAlive == true)
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").1.expectContinue)
        let upgrade = parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").1
        #expect(upgrade.upgrade)
        #expect(parseRequest("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").1.upgrade == false)
    }

    @Test func sameVersionTwiceIsFineDifferentIsNot() {
        let same = "GET / HTTP/1.1\r\nHost: a\r\nX-ANYSCALE-VERSION: v1\r\nx-anyscale-version: v1\r\n\r\n"
        #expect(parseRequest(same).0 == .complete(length: same.utf8.count))
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX-ANYSCALE-VERSION: v1\r\nX-ANYSCALE-VERSION: v2\r\n\r\n").0
            == .error(.malformed("X-ANYSCALE-VERSION is given twice with different values")))
    }

    /// Every ambiguous or malformed head from RFC 9112's list is refused with 400.
    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad : b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\nX-More: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / FTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
    ])
    func refusesMalformedHeads(_ text: String) {
        let (status, _) = parseRequest(text)
        guard case .error(let error) = status else {
            Issue.record("accepted: \(text.debugDescription)")
            return
        }
        #expect(error.status == 400, "\(text.debugDescription) gave \(error)")
    }

    @Test func limitsHaveTheirOwnStatus() {
        let limits = HeadLimits(maxHeadBytes: 1024, maxHeaders: 4, maxURIBytes: 100)
        let manyHeaders = "GET / HTTP/1.1\r\nHost: a\r\n" + (1...4).map { "X-\($0): y\r\n" }.joined() + "\r\n"
        #expect(parseRequest(manyHeaders, limits: limits).0 == .error(.tooManyHeaders))
        let longTarget = "GET /" + String(repeating: "a", count: 200) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(parseRequest(longTarget, limits: limits).0 == .error(.uriTooLong))
        let bigHead = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "b", count: 2000) + "\r\n\r\n"
        #expect(parseRequest(bigHead, limits: limits).0 == .error(.headTooLarge))
        let unfinishedBigHead = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "b", count: 2000)
        #expect(parseRequest(unfinishedBigHead, limits: limits).0 == .error(.headTooLarge))
        #expect(parseRequest("GET / HTTP/2.0\r\nHost: a\r\n\r\n").0 == .error(.versionNotSupported))
        #expect(HTTPParseError.tooManyHeaders.status == 431)
        #expect(HTTPParseError.uriTooLong.status == 414)
    }

    @Test func absoluteFormTargetsGiveOriginFormAndHost() {
        let text = "GET HTTP://api.example:8080/v1/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n"
        let (status, head) = parseRequest(text)
        #expect(status == .complete(length: text.utf8.count))
        #expect(head.hostFromTarget)
        #expect(field(head.host, in: text) == "api.example:8080")
        #expect(field(head.originTarget, in: text) == "/v1/x?y=1")
        #expect(!head.originNeedsSlash)
        let noPath = "GET https://api.example?q HTTP/1.1\r\nHost: x\r\n\r\n"
        let (_, bare) = parseRequest(noPath)
        #expect(field(bare.originTarget, in: noPath) == "?q" && bare.originNeedsSlash)
    }

    @Test(arguments: ["http://user@h/p", "http:///p", "ftp://h/p", "relative/path", "*"])
    func refusesOtherTargetForms(_ target: String) {
        let (status, _) = parseRequest("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n")
        guard case .error(.malformed) = status else {
            Issue.record("\(target) was accepted: \(status)")
            return
        }
    }

    @Test func onlyWebSocketUpgradesWithoutABodyAreHonoured() {
        let websocket = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").1
        #expect(websocket.upgrade)
        let h2c = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").1
        #expect(!h2c.upgrade)
        let withBody = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n").1
        #expect(!withBody.upgrade)
    }

    @Test func teTrailersIsRecognised() {
        #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nTE: gzip, Trailers\r\n\r\n").1.acceptsTrailers)
        #expect(!parseRequest("GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n").1.acceptsTrailers)
    }

    @Test func skipsEmptyLinesBeforeARequest() {
        let bytes = Array("\r\n\r\nGET".utf8)
        #expect(bytes.withUnsafeBytes { HeadParser.leadingEmptyLines($0) } == 4)
    }
}

@Suite struct ResponseHeadTests {
    func parse(_ text: String, head requestWasHead: Bool = false) -> (HeadParseStatus, ResponseHead) {
        var parser = HeadParser(limits: HeadLimits())
        var head = ResponseHead()
        let status = Array(text.utf8).withUnsafeBytes { parser.parseResponse($0, requestWasHead: requestWasHead, into: &head) }
        return (status, head)
    }

    @Test func framingFollowsRFC9112() {
        #expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").1.framing == .contentLength(3))
        #expect(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing == .chunked)
        #expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", head: true).1.framing == .none)
        #expect(parse("HTTP/1.1 204 No Content\r\n\r\n").1.framing == .none)
        #expect(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").1.framing == .none)
        #expect(parse("HTTP/1.1 100 Continue\r\n\r\n").1.framing == .none)
        let untilClose = parse("HTTP/1.1 200 OK\r\n\r\n").1
        #expect(untilClose.framing == .untilClose)
        #expect(untilClose.keepAlive == false)
        #expect(parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").1.status == 200)
        #expect(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").1.keepAlive == false)
    }

    @Test func refusesAmbiguousResponses() {
        #expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").0
            == .error(.malformed("both Content-Length and Transfer-Encoding are present")))
        if case .error = parse("HTTP/1.1 2x0 OK\r\n\r\n").0 {} else { Issue.record("bad status code accepted") }
        if case .error = parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").0 {} else {
            Issue.record("conflicting Content-Length accepted")
        }
    }
}

@Suite struct ASCIITests {
    @Test func tokenCharactersAreExactlyRFC9110s() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(ASCII.isTokenChar(byte) == tchar.contains(byte), "byte \(byte)")
        }
    }
}
