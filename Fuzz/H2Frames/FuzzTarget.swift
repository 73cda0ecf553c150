/// libFuzzer target: `H2FrameScanner` against a reference written separately, over arbitrary
/// bytes split at arbitrary places (the first byte picks the chunk size). The reference
/// walks the whole input at once: a frame counts when its 9-byte header is all there, the
/// next header starts after the payload.
///
/// They must agree on every input, and the scanner must never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzH2Frames(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let step = Int(bytes[0]) + 1
    let input = UnsafeRawBufferPointer(start: bytes + 1, count: size - 1)
    var scanner = H2FrameScanner(prefaceBytes: 0)
    var counted = 0
    var start = 0
    while start < input.count {
        let end = min(input.count, start + step)
        counted += scanner.overheadFrames(in: UnsafeRawBufferPointer(rebasing: input[start..<end]))
        start = end
    }
    precondition(counted == referenceCount(input), "the scanner and the reference disagree")
    return 0
}

private func referenceCount(_ input: UnsafeRawBufferPointer) -> Int {
    var count = 0
    var offset = 0
    while offset + 9 <= input.count {
        let length = Int(input[offset]) << 16 | Int(input[offset + 1]) << 8 | Int(input[offset + 2])
        let type = input[offset + 3], flags = input[offset + 4]
        let carriesRequest = type == 0x1 || type == 0x9 || (type == 0x0 && (length > 0 || flags & 0x1 != 0))
        if !carriesRequest { count += 1 }
        offset += 9 + length
    }
    return count
}
