import Testing
@testable import SwitchyardHTTP2

/// A frame as RFC 9113 §4.1 lays it out.
private func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
    let length = payload.count
    return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
            UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
}

private let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

struct H2FrameScannerTests {
    /// The overhead frames in `bytes`, fed in pieces of `split` bytes.
    private func count(_ bytes: [UInt8], split: Int) -> Int {
        var scanner = H2FrameScanner(prefaceBytes: preface.count)
        var total = 0
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + split)
            total += bytes[start..<end].withUnsafeBytes { scanner.overheadFrames(in: $0) }
            start = end
        }
        return total
    }

    @Test func framesWithoutARequestAreCountedWhereverTheBytesAreSplit() {
        var bytes = preface
        bytes += frame(type: 0x4, payload: [0, 3, 0, 0, 0, 100])  // SETTINGS: counts
        bytes += frame(type: 0x1, flags: 0x5, stream: 1, payload: [0x82, 0x86, 0x84])  // HEADERS: not
        bytes += frame(type: 0x0, stream: 1, payload: Array(repeating: 0x50, count: 300))  // DATA with bytes: not
        bytes += frame(type: 0x0, flags: 0x1, stream: 1)  // empty DATA ending the stream: not
        bytes += frame(type: 0x0, stream: 1)  // empty DATA: counts
        bytes += frame(type: 0x2, stream: 3, payload: [0, 0, 0, 1, 16])  // PRIORITY: counts
        bytes += frame(type: 0x8, payload: [0, 0, 0, 1])  // WINDOW_UPDATE: counts
        bytes += frame(type: 0x6, payload: Array(repeating: 1, count: 8))  // PING: counts
        bytes += frame(type: 0x9, flags: 0x4, stream: 1, payload: [0x82])  // CONTINUATION: not
        bytes += frame(type: 0xA, payload: [0, 0])  // unknown type (ALTSVC): counts
        bytes += frame(type: 0x3, stream: 5, payload: [0, 0, 0, 8])  // RST_STREAM: counts
        for split in [1, 2, 5, 9, 10, 24, 25, 1000] {
            #expect(count(bytes, split: split) == 7, "split every \(split) bytes")
        }
    }

    @Test func payloadBytesAreNeverReadAsHeaders() {
        // A DATA payload that looks like a run of PING frames counts nothing.
        let fake = (0..<20).flatMap { _ in frame(type: 0x6, payload: Array(repeating: 0, count: 8)) }
        let bytes = preface + frame(type: 0x0, stream: 1, payload: fake) + frame(type: 0x6, payload: Array(repeating: 0, count: 8))
        #expect(count(bytes, split: 7) == 1)
    }

    @Test func theLargestFrameLengthIsSkippedExactly() {
        var scanner = H2FrameScanner(prefaceBytes: 0)
        let header = [UInt8(0xFF), 0xFF, 0xFF, 0x0, 0x0, 0, 0, 0, 1]
        #expect(header.withUnsafeBytes { scanner.overheadFrames(in: $0) } == 0)
        let payload = [UInt8](repeating: 0x6, count: 0xFF_FFFF)
        #expect(payload.withUnsafeBytes { scanner.overheadFrames(in: $0) } == 0)
        let ping = frame(type: 0x6, payload: Array(repeating: 0, count: 8))
        #expect(ping.withUnsafeBytes { scanner.overheadFrames(in: $0) } == 1)
    }
}

struct TokenBucketTests {
    /// `#expect` cannot call a mutating method itself.
    private func take(_ bucket: inout TokenBucket, _ count: Int = 1, now: Double) -> Bool { bucket.take(count, now: now) }

    @Test func aBurstThenTheRefillRate() {
        var bucket = TokenBucket(burst: 10, perSecond: 100, now: 0)
        #expect(take(&bucket, 10, now: 0))
        #expect(!take(&bucket, now: 0), "the burst is spent")
        #expect(take(&bucket, now: 0.011), "one regained after 10 ms")
        #expect(!take(&bucket, now: 0.011))
        #expect(take(&bucket, 10, now: 5), "refilled to the burst, never past it")
        #expect(!take(&bucket, now: 5))
    }

    @Test func overspendingEmptiesTheBucket() {
        var bucket = TokenBucket(burst: 10, perSecond: 1, now: 0)
        #expect(!take(&bucket, 11, now: 0))
        #expect(!take(&bucket, now: 0.5), "nothing left after an overspend")
        #expect(take(&bucket, now: 1.5))
    }

    @Test func aClockThatGoesBackGivesNothing() {
        var bucket = TokenBucket(burst: 2, perSecond: 1000, now: 10)
        #expect(take(&bucket, 2, now: 10))
        #expect(!take(&bucket, now: 9))
    }
}

struct H2OverheadBudgetTests {
    @Test func aFloodOfFramesWithoutRequestsEndsInEnhanceYourCalm() throws {
        var limits = H2Limits()
        limits.overheadFrameBurst = 100
        limits.overheadFramesPerSecond = 1
        let server = try RecordingConnection(limits: limits)
        let client = H2TestClient()
        client.exchange(with: server.session)
        var bytes: [UInt8] = []
        for _ in 0..<150 { bytes += frame(type: 0x8, payload: [0, 0, 0, 1]) }
        #expect(throws: Never.self) { try bytes.withUnsafeBytes { try server.session.receive($0) } }
        #expect(server.session.goAwayReason == .overheadFrames)
        var sent: [UInt8] = []
        while let out = try server.session.send() { sent += out }
        // The last frame out is GOAWAY (type 7) with ENHANCE_YOUR_CALM (0xb).
        let goAway = Array(sent.suffix(17))
        #expect(goAway[3] == 0x7 && goAway[16] == 0xB, "\(goAway)")
        #expect(!server.session.wantsRead && !server.session.wantsWrite)
    }

    @Test func framesWithinTheBudgetAreServed() throws {
        var limits = H2Limits()
        limits.overheadFrameBurst = 100
        let server = try RecordingConnection(limits: limits)
        server.answer = { _, _ in (200, Array("ok".utf8)) }
        let client = H2TestClient()
        client.exchange(with: server.session)
        var bytes: [UInt8] = []
        for _ in 0..<50 { bytes += frame(type: 0x6, payload: Array(repeating: 0, count: 8)) }
        try bytes.withUnsafeBytes { try server.session.receive($0) }
        #expect(server.session.goAwayReason == nil)
        let stream = client.request()
        client.exchange(with: server.session)
        #expect(client.responses[stream]?.status == 200)
    }
}
