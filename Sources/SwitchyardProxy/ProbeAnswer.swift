import SwitchyardHTTP

/// Reads a health probe's answer: 200 is healthy, Ray Serve's `503 This node is being drained.`
/// is draining, anything else a failure with its reason. Pure; fed the bytes read so far.
enum ProbeAnswer {
    /// Bytes kept of an answer: enough for any head a health endpoint sends and the start of
    /// its body, bounded whatever the backend sends.
    static let maxBytes = 8192
    static let drainingBody = Array("This node is being drained.".utf8)

    /// The verdict once the answer is complete enough to judge (`closed`: the backend closed
    /// the connection after these bytes); nil while more is needed.
    static func evaluate(_ bytes: [UInt8], closed: Bool) -> ProbeResult? {
        var parser = HeadParser(limits: HeadLimits(maxHeadBytes: maxBytes, maxHeaders: 100, maxURIBytes: maxBytes))
        var head = ResponseHead()
        let status = bytes.withUnsafeBytes { parser.parseResponse($0, requestWasHead: false, into: &head) }
        switch status {
        case .error(let error):
            return .failed("answered with a malformed response (\(error.message))")
        case .needMore:
            if closed || bytes.count >= maxBytes {
                return .failed(bytes.isEmpty ? "closed the connection without an answer" : "sent an incomplete response head")
            }
            return nil
        case .complete(let length):
            if head.status < 200 { return .failed("answered \(head.status) (an interim response to a plain GET)") }
            if head.status == 200 { return .healthy }
            guard head.status == 503 else { return .failed("answered \(head.status) instead of 200") }
            // A 503 needs its body read to tell a draining node from an overloaded one.
            let body = bytes[length...]
            let bodyComplete: Bool
            switch head.framing {
            case .contentLength(let count): bodyComplete = body.count >= min(count, maxBytes - length)
            case .none: bodyComplete = true
            case .chunked, .untilClose: bodyComplete = false
            }
            guard bodyComplete || closed || bytes.count >= maxBytes else { return nil }
            if contains(body, drainingBody) { return .draining }
            return .failed("answered 503 instead of 200")
        }
    }

    private static func contains(_ haystack: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        var start = haystack.startIndex
        while start + needle.count <= haystack.endIndex {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
            start += 1
        }
        return false
    }
}
