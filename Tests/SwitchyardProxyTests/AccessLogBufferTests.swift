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
        #expect(text { buffer in hostile.withUnsafeBytes { buffer.appendQuoted($0) } } == #""\"\\\u000a\u0000é\u007f""#)
    }

    @Test func utf8IsCopiedAndEveryByteOfAnIllFormedSequenceBecomesAReplacement() {
        func quoted(_ bytes: [UInt8]) -> String { text { buffer in bytes.withUnsafeBytes { buffer.appendQuoted($0) } } }
        #expect(quoted(Array("€ 😀 ü".utf8)) == "\"€ 😀 ü\"")
        #expect(quoted([0x61, 0xC3]) == #""a\ufffd""#, "a lead byte at the end")
        #expect(quoted([0xC0, 0xAF]) == #""\ufffd\ufffd""#, "an overlong form")
        #expect(quoted([0xED, 0xA0, 0x80]) == #""\ufffd\ufffd\ufffd""#, "a surrogate")
        #expect(quoted([0xF4, 0x90, 0x80, 0x80]) == #""\ufffd\ufffd\ufffd\ufffd""#, "past U+10FFFF")
        #expect(quoted([0xE2, 0x82, 0x41]) == #""\ufffd\ufffdA""#, "a sequence cut by ASCII")
        #expect(quoted([0x80, 0xE2, 0x82, 0xAC]) == #""\ufffd€""#, "a stray continuation byte, then €")
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
