import SwitchyardIO
import Testing
@testable import SwitchyardProxy

@Suite struct PackedFieldsTests {
    private func fields(_ buffer: ByteBuffer, from start: Int = 0) -> [String] {
        var out: [String] = []
        PackedFields.forEach(UnsafeRawBufferPointer(rebasing: buffer.readableBytes[start...])) { name, value in
            out.append(String(decoding: name, as: UTF8.self) + "=" + String(decoding: value, as: UTF8.self))
        }
        return out
    }

    @Test func fieldsComeBackAsWrittenWithoutParsingText() {
        let buffer = ByteBuffer(capacity: 64)
        // Bytes a text form would have to escape or trim come back as they were.
        let values: [(String, String)] = [("content-type", "text/plain"), ("x-empty", ""), ("x-odd", " a: b\r\n "), ("", "v")]
        for (name, value) in values {
            Array(name.utf8).withUnsafeBytes { name in
                Array(value.utf8).withUnsafeBytes { PackedFields.append(name: name, value: $0, to: buffer) }
            }
        }
        #expect(fields(buffer) == ["content-type=text/plain", "x-empty=", "x-odd= a: b\r\n ", "=v"])
    }

    @Test func aValueMayBeWrittenInPieces() {
        let buffer = ByteBuffer(capacity: 8)  // grows while the value is written
        PackedFields.append(name: "grpc-status", to: buffer) { $0.append(decimal: 14) }
        let start = buffer.readableCount
        PackedFields.append(name: "grpc-message", to: buffer) {
            $0.append("upstream " as StaticString)
            $0.append(String(repeating: "x", count: 300))
        }
        #expect(fields(buffer) == ["grpc-status=14", "grpc-message=upstream " + String(repeating: "x", count: 300)])
        #expect(fields(buffer, from: start).count == 1)
    }

    @Test func aTruncatedFieldEndsTheWalk() {
        let buffer = ByteBuffer(capacity: 64)
        func write() {
            buffer.clear()
            PackedFields.append(name: "a", to: buffer) { $0.append("1" as StaticString) }  // 4 + 4 + 1 + 1 bytes
            PackedFields.append(name: "bb", to: buffer) { $0.append("22" as StaticString) }
        }
        write()
        let whole = buffer.readableCount
        #expect(fields(buffer).count == 2)
        for cut in 0..<whole {
            write()
            buffer.truncateReadable(to: cut)
            #expect(fields(buffer).count == (cut >= 10 ? 1 : 0), "cut at \(cut)")
        }
    }
}
