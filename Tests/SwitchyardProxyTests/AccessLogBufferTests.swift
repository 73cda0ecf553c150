import Testing
@testable import SwitchyardProxy

@Suite struct AccessLogBufferTests {
    private func text(_ fill: (AccessLogBuffer) -> Void) -> String {
        let buffer = AccessLogBuffer()
        fill(buffer)
        return String(decoding: buffer.bytes, as: UTF8.self)
    }

    @Test func numbers() {
        #expect(text { $0.appendDecimal(0) } == "0")
        #expect(text { $0.appendDecimal(10) } == "10")
        #expect(text { $0.appendDecimal(UInt64.max) } == "18446744073709551615")
        #expect(text { $0.appendHex(0x0123_4567_89AB_CDEF) } == "0123456789abcdef")
        #expect(text { $0.appendMillis(from: 1_000, to: 12_345_678_000) } == "12345.677")
        #expect(text { $0.appendMillis(from: 5, to: 5) } == "0.000")
        #expect(text { $0.appendMillis(from: 0, to: 5) } == "null")
        #expect(text { $0.appendMillis(from: 9, to: 5) } == "null")
    }

    @Test func stringsAreAlwaysValidJSON() {
        #expect(text { buffer in Array("/a/b".utf8).withUnsafeBytes { buffer.appendQuoted($0) } } == #""/a/b""#)
        let hostile: [UInt8] = [0x22, 0x5C, 0x0A, 0x00, 0xC3, 0xA9, 0x7F]
        #expect(text { buffer in hostile.withUnsafeBytes { buffer.appendQuoted($0) } } == #""\"\\\u000a\u0000\u00c3\u00a9\u007f""#)
        #expect(text { $0.appendQuotedOrNull(UnsafeRawBufferPointer(start: nil, count: 0)) } == "null")
    }

    @Test func aSummaryCutsTheQueryAndLongValues() {
        var summary = RequestSummary()
        defer { summary.deallocate() }
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: 5000)
        Array("GET".utf8).withUnsafeBytes { method in
            Array("/p?token=secret".utf8).withUnsafeBytes { target in
                summary.capture(method: method, target: target, requestID: nil, query: false)
            }
        }
        #expect(Array(summary.path) == Array("/p".utf8) && summary.requestIDLength == 0)
        Array("GET".utf8).withUnsafeBytes { method in
            long.withUnsafeBytes { target in
                long.withUnsafeBytes { id in summary.capture(method: method, target: target, requestID: id, query: true) }
            }
        }
        #expect(summary.pathLength == RequestSummary.maxPath && summary.requestIDLength == RequestSummary.maxRequestID)
        #expect(WorkerAccessLog.maxLineBytes < AccessLogBuffer.capacity / 8)
    }
}
