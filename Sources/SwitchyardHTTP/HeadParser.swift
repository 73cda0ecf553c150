import Glibc

/// A strict RFC 9112 message-head parser for requests and responses.
///
/// Incremental in two steps: `parseRequest`/`parseResponse` first look for the end of the head,
/// remembering how far they searched so that bytes arriving in small pieces are scanned once;
/// when the empty line is there, the whole head is parsed and validated in one pass. Nothing
/// is copied: the result holds byte ranges into the caller's buffer.
///
///     request-line   = method SP request-target SP HTTP-version CRLF
///     status-line    = HTTP-version SP status-code SP [ reason-phrase ] CRLF
///     field-line     = field-name ":" OWS field-value OWS CRLF
///     head           = start-line *( field-line ) CRLF
///
/// Refused (400 unless said otherwise): bare CR or LF line ends, obs-fold, whitespace before
/// the colon, control characters in values, both Content-Length and Transfer-Encoding,
/// differing or malformed Content-Length, a Transfer-Encoding whose last coding is not
/// `chunked`, a missing or repeated Host; a head over the size limit (431), too many fields
/// (431), a long target (414), an unknown HTTP version (505).
public struct HeadParser: Sendable {
    public var limits: HeadLimits
    private var scanned = 0

    public init(limits: HeadLimits) {
        self.limits = limits
    }

    /// Forgets the search position; call after a head was consumed.
    public mutating func reset() { scanned = 0 }

    // MARK: - Finding the end of the head

    /// Returns the length of the head (through its empty line), or nil if it is not complete.
    /// Stops at the first LF followed by LF or CRLF; the line parser rejects the bare LF.
    private mutating func findEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        var index = max(scanned, 0)
        let count = bytes.count
        while index < count {
            guard let found = memchr(base + index, Int32(ASCII.lf), count - index) else {
                index = count
                break
            }
            let lf = base.distance(to: UnsafeRawPointer(found))
            if lf + 1 < count, bytes[lf + 1] == ASCII.lf { return lf + 2 }
            if lf + 2 < count, bytes[lf + 1] == ASCII.cr, bytes[lf + 2] == ASCII.lf { return lf + 3 }
            if lf + 2 >= count {
                // Not enough bytes after this LF to decide: look again from here next time.
                scanned = lf
                return nil
            }
            index = lf + 1
        }
        scanned = index
        return nil
    }

    /// Leading empty lines (CRLF) before a request line are skipped (RFC 9112 §2.2); returns
    /// how many bytes they take.
    public static func leadingEmptyLines(_ bytes: UnsafeRawBufferPointer) -> Int {
        var index = 0
        while index + 1 < bytes.count, bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf { index += 2 }
        return index
    }

    // MARK: - Requests

    /// Parses a request head at the start of `bytes` into `head`.
    public mutating func parseRequest(_ bytes: UnsafeRawBufferPointer, into head: inout RequestHead) -> HeadParseStatus {
        guard let length = findEnd(bytes) else {
            if bytes.count > limits.maxHeadBytes {
                return .error(requestLineTooLong(bytes) ? .uriTooLong : .headTooLarge)
            }
            return .needMore
        }
        if length > limits.maxHeadBytes {
            return .error(requestLineTooLong(bytes) ? .uriTooLong : .headTooLarge)
        }
        head.reset()
        let headBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        if let error = parseRequestHead(headBytes, &head) { return .error(error) }
        return .complete(length: length)
    }

    private func requestLineTooLong(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let lineEnd = memchr(base, Int32(ASCII.lf), bytes.count).map { base.distance(to: UnsafeRawPointer($0)) } ?? bytes.count
        return lineEnd > limits.maxURIBytes
    }

    private func parseRequestHead(_ bytes: UnsafeRawBufferPointer, _ head: inout RequestHead) -> HTTPParseError? {
        var index = 0
        // method
        while index < bytes.count, ASCII.isTokenChar(bytes[index]) { index += 1 }
        guard index > 0, index < bytes.count, bytes[index] == ASCII.space else {
            return .malformed("the request line must be: method SP target SP HTTP/1.1")
        }
        head.method = ByteRange(start: 0, end: index)
        head.methodKind = RequestMethod.classify(head.method.bytes(in: bytes))
        index += 1
        // target: visible ASCII only
        let targetStart = index
        while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7F { index += 1 }
        guard index > targetStart, index < bytes.count, bytes[index] == ASCII.space else {
            return .malformed("the request target must be visible ASCII followed by one space")
        }
        if index - targetStart > limits.maxURIBytes { return .uriTooLong }
        head.target = ByteRange(start: targetStart, end: index)
        if let error = classifyTarget(bytes, &head) { return error }
        index += 1
        switch parseVersion(bytes, &index) {
        case .http11?: head.version = .http11
        case .http10?: head.version = .http10
        case nil: return versionError(bytes, from: index)
        }
        guard index + 1 < bytes.count, bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf else {
            return .malformed("the request line must end with CRLF")
        }
        index += 2
        if let error = parseFields(bytes, from: index, into: &head.fields) { return error }
        return interpretRequestFields(bytes, &head)
    }

    /// Origin-form (`/path?query`), absolute-form (`http://authority/path`) or `*` for OPTIONS
    /// (RFC 9112 §3.2). Authority-form belongs to CONNECT, which the proxy refuses later.
    private func classifyTarget(_ bytes: UnsafeRawBufferPointer, _ head: inout RequestHead) -> HTTPParseError? {
        let target = head.target.bytes(in: bytes)
        let start = Int(head.target.start)
        head.originTarget = head.target
        if target[0] == UInt8(ascii: "/") { return nil }
        if target.count == 1, target[0] == UInt8(ascii: "*"), head.methodKind == .options { return nil }
        if head.methodKind == .connect { return nil }
        var schemeEnd = 0
        if target.count > 7, ASCII.equalsLowercased(UnsafeRawBufferPointer(rebasing: target[0..<7]), "http://") {
            schemeEnd = 7
        } else if target.count > 8, ASCII.equalsLowercased(UnsafeRawBufferPointer(rebasing: target[0..<8]), "https://") {
            schemeEnd = 8
        } else {
            return .malformed("the request target must be a path starting with / or an absolute http(s) URI")
        }
        var authorityEnd = schemeEnd
        while authorityEnd < target.count, target[authorityEnd] != UInt8(ascii: "/"), target[authorityEnd] != UInt8(ascii: "?") {
            let byte = target[authorityEnd]
            // No userinfo (RFC 9110 §4.2.4), no fragment.
            guard byte != UInt8(ascii: "@"), byte != UInt8(ascii: "#") else {
                return .malformed("the authority of an absolute request target must be host[:port]")
            }
            authorityEnd += 1
        }
        guard authorityEnd > schemeEnd else { return .malformed("the absolute request target has no host") }
        head.hostFromTarget = true
        head.host = ByteRange(start: start + schemeEnd, end: start + authorityEnd)
        head.originTarget = ByteRange(start: start + authorityEnd, end: Int(head.target.end))
        head.originNeedsSlash = authorityEnd == target.count || target[authorityEnd] != UInt8(ascii: "/")
        return nil
    }

    private func versionError(_ bytes: UnsafeRawBufferPointer, from index: Int) -> HTTPParseError {
        let prefix = "HTTP/".utf8
        if bytes.count - index >= 8, zip(bytes[index..<index + 5], prefix).allSatisfy({ $0 == $1 }) {
            return .versionNotSupported
        }
        return .malformed("the request line must end with HTTP/1.1 or HTTP/1.0")
    }

    private func parseVersion(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> HTTPVersion? {
        guard bytes.count - index >= 8 else { return nil }
        let b = bytes
        let i = index
        guard b[i] == 72, b[i + 1] == 84, b[i + 2] == 84, b[i + 3] == 80, b[i + 4] == 47, b[i + 5] == 49,
              b[i + 6] == 46 else { return nil }  // "HTTP/1."
        index += 8
        switch b[i + 7] {
        case 49: return .http11
        case 48: return .http10
        default: index -= 8; return nil
        }
    }

    private func interpretRequestFields(_ bytes: UnsafeRawBufferPointer, _ head: inout RequestHead) -> HTTPParseError? {
        var hostCount = 0
        var framing = FramingFields(version: head.version)
        var upgradeToWebSocket = false
        for field in head.fields {
            let value = field.value.bytes(in: bytes)
            if let error = framing.add(field.kind, value) { return error }
            switch field.kind {
            case .host:
                hostCount += 1
                if !head.hostFromTarget { head.host = field.value }
            case .upgrade:
                ASCII.forEachListElement(value) { token in
                    if ASCII.equalsLowercased(token, "websocket") { upgradeToWebSocket = true }
                }
            case .te:
                ASCII.forEachListElement(value) { coding in
                    if ASCII.equalsLowercased(coding, "trailers") { head.acceptsTrailers = true }
                }
            case .expect:
                if ASCII.equalsLowercased(value, "100-continue") { head.expectContinue = true }
            case .authorization:
                if head.authorization != nil { return .malformed("more than one Authorization header") }
                head.authorization = field.value
            case .anyscaleVersion:
                if field.value.isEmpty { continue }
                if let previous = head.pinnedVersion, !ASCII.equals(previous.bytes(in: bytes), value) {
                    return .malformed(VersionField.givenTwice)
                }
                head.pinnedVersion = field.value
            case .requestID:
                head.hasRequestID = true
            default:
                break
            }
        }
        if hostCount == 0 { return .malformed("the Host header is missing") }
        if hostCount > 1 { return .malformed("the Host header is repeated") }
        head.keepAlive = framing.keepAlive
        head.hasConnectionOptions = framing.hasConnectionOptions
        if framing.sawTransferEncoding {
            if framing.contentLength != nil { return .malformed("both Content-Length and Transfer-Encoding are present") }
            if head.version == .http10 { return .malformed("Transfer-Encoding is not allowed in HTTP/1.0") }
            if !framing.chunkedLast { return .malformed("Transfer-Encoding must end with chunked, and chunked only once") }
            head.framing = .chunked
        } else if let contentLength = framing.contentLength, contentLength > 0 {
            head.framing = .contentLength(contentLength)
        }
        head.upgrade = framing.connectionUpgrade && upgradeToWebSocket && head.version == .http11 && head.framing == .none
        return nil
    }

    // MARK: - Responses

    /// Parses a response head. `requestMethodWasHead` decides whether a body follows.
    public mutating func parseResponse(_ bytes: UnsafeRawBufferPointer, requestWasHead: Bool, into head: inout ResponseHead) -> HeadParseStatus {
        guard let length = findEnd(bytes) else {
            return bytes.count > limits.maxHeadBytes ? .error(.headTooLarge) : .needMore
        }
        if length > limits.maxHeadBytes { return .error(.headTooLarge) }
        head.reset()
        let headBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        if let error = parseResponseHead(headBytes, requestWasHead: requestWasHead, &head) { return .error(error) }
        return .complete(length: length)
    }

    private func parseResponseHead(_ bytes: UnsafeRawBufferPointer, requestWasHead: Bool, _ head: inout ResponseHead) -> HTTPParseError? {
        var index = 0
        guard let version = parseVersion(bytes, &index) else { return .malformed("the status line must start with HTTP/1.x") }
        head.version = version
        guard bytes.count - index >= 6, bytes[index] == ASCII.space else { return .malformed("bad status line") }
        var status = 0
        for offset in 1...3 {
            let digit = bytes[index + offset] &- 48
            guard digit < 10 else { return .malformed("the status code must be three digits") }
            status = status * 10 + Int(digit)
        }
        guard status >= 100 else { return .malformed("the status code must be three digits") }
        head.status = status
        index += 4
        // Optional reason phrase: HTAB, SP, VCHAR, obs-text.
        while index < bytes.count, bytes[index] != ASCII.cr, bytes[index] != ASCII.lf {
            let byte = bytes[index]
            guard byte == ASCII.tab || (byte >= 0x20 && byte != 0x7F) else { return .malformed("control character in the reason phrase") }
            index += 1
        }
        guard index + 1 < bytes.count, bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf else {
            return .malformed("the status line must end with CRLF")
        }
        index += 2
        head.statusLine = ByteRange(start: 0, end: index)
        if let error = parseFields(bytes, from: index, into: &head.fields) { return error }
        return interpretResponseFields(bytes, requestWasHead: requestWasHead, &head)
    }

    private func interpretResponseFields(_ bytes: UnsafeRawBufferPointer, requestWasHead: Bool, _ head: inout ResponseHead) -> HTTPParseError? {
        var framing = FramingFields(version: head.version)
        for field in head.fields {
            if let error = framing.add(field.kind, field.value.bytes(in: bytes)) { return error }
        }
        if framing.sawTransferEncoding && framing.contentLength != nil {
            return .malformed("both Content-Length and Transfer-Encoding are present")
        }
        head.keepAlive = framing.keepAlive
        head.hasConnectionOptions = framing.hasConnectionOptions
        let status = head.status
        if requestWasHead || status < 200 || status == 204 || status == 304 {
            head.framing = .none
        } else if framing.sawTransferEncoding {
            head.framing = framing.chunkedLast ? .chunked : .untilClose
            if !framing.chunkedLast { head.keepAlive = false }
        } else if let contentLength = framing.contentLength {
            head.framing = contentLength > 0 ? .contentLength(contentLength) : .none
        } else {
            head.framing = .untilClose
            head.keepAlive = false
        }
        return nil
    }

    // MARK: - Fields

    private func parseFields(_ bytes: UnsafeRawBufferPointer, from start: Int, into fields: inout [HeaderField]) -> HTTPParseError? {
        var index = start
        let end = bytes.count
        while true {
            guard index < end else { return .malformed("the head must end with an empty line") }
            let first = bytes[index]
            if first == ASCII.cr {
                guard index + 1 < end, bytes[index + 1] == ASCII.lf, index + 2 == end else {
                    return .malformed("the head must end with CRLF CRLF")
                }
                return nil
            }
            if first == ASCII.space || first == ASCII.tab {
                return .malformed("obsolete line folding is not accepted")
            }
            if fields.count == limits.maxHeaders { return .tooManyHeaders }
            let nameStart = index
            while index < end, ASCII.isTokenChar(bytes[index]) { index += 1 }
            guard index < end, bytes[index] == ASCII.colon else {
                if index < end, bytes[index] == ASCII.space || bytes[index] == ASCII.tab {
                    return .malformed("whitespace between a header name and the colon")
                }
                return .malformed("a header name contains a character that is not allowed")
            }
            guard index > nameStart else { return .malformed("empty header name") }
            let name = ByteRange(start: nameStart, end: index)
            index += 1
            while index < end, bytes[index] == ASCII.space || bytes[index] == ASCII.tab { index += 1 }
            let valueStart = index
            var valueEnd = index
            while index < end {
                let byte = bytes[index]
                if byte == ASCII.cr || byte == ASCII.lf { break }
                guard byte == ASCII.tab || (byte >= 0x20 && byte != 0x7F) else {
                    return .malformed("a header value contains a control character")
                }
                index += 1
                if byte != ASCII.space && byte != ASCII.tab { valueEnd = index }
            }
            guard index + 1 < end, bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf else {
                return .malformed("header lines must end with CRLF")
            }
            index += 2
            let kind = KnownHeader.classify(name.bytes(in: bytes))
            fields.append(HeaderField(
                name: name, value: ByteRange(start: valueStart, end: valueEnd), kind: kind,
                line: ByteRange(start: nameStart, end: index)))
        }
    }
}
