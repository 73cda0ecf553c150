/// libFuzzer target: the HTTP/1.1 head parser on hostile bytes, as requests and as responses.
///
/// It must never trap, a head it accepts must have every range inside the head, and parsing
/// the bytes in two arrivals (as a socket would deliver them) must give the same answer as
/// parsing them at once.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeadParser(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let split = Int(bytes[0])
    let input = UnsafeRawBufferPointer(start: bytes + 1, count: size - 1)
    let limits = HeadLimits(maxHeadBytes: 2048, maxHeaders: 16, maxURIBytes: 512)

    var whole = HeadParser(limits: limits)
    var request = RequestHead()
    let status = whole.parseRequest(input, into: &request)
    var pieces = HeadParser(limits: limits)
    var again = RequestHead()
    let first = pieces.parseRequest(UnsafeRawBufferPointer(rebasing: input[0..<min(split, input.count)]), into: &again)
    let second = first == .needMore ? pieces.parseRequest(input, into: &again) : first
    if case .complete = first, split < input.count {
        // A complete head in the first arrival is complete in the whole input too.
        precondition(status == first, "request: \(first) from a prefix, \(status) from all")
    } else {
        precondition(second == status, "request: \(second) in two arrivals, \(status) at once")
    }
    if case .complete(let length) = status {
        precondition(length <= input.count)
        for field in request.fields {
            checkRange(field.name, length)
            checkRange(field.value, length)
            checkRange(field.line, length)
        }
        for range in [request.method, request.target, request.originTarget, request.host] { checkRange(range, length) }
        if let authorization = request.authorization { checkRange(authorization, length) }
        if let pinned = request.pinnedVersion { checkRange(pinned, length) }
        precondition(request.originTarget.start >= request.target.start && request.originTarget.end == request.target.end)
    }

    var responseParser = HeadParser(limits: limits)
    var response = ResponseHead()
    if case .complete(let length) = responseParser.parseResponse(input, requestWasHead: split & 1 == 1, into: &response) {
        checkRange(response.statusLine, length)
        precondition((100...999).contains(response.status))
        for field in response.fields { checkRange(field.line, length) }
    }
    return 0
}

func checkRange(_ range: ByteRange, _ length: Int) {
    precondition(range.start >= 0 && range.start <= range.end && Int(range.end) <= length, "range \(range) outside a head of \(length) bytes")
}
