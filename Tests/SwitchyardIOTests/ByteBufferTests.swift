import Testing
import SwitchyardIO

@Suite struct ByteBufferTests {
    @Test func moveCopiesWhatFitsAndConsumesIt() {
        let buffer = ByteBuffer(capacity: 64)
        Array("hello, world".utf8).withUnsafeBytes { buffer.append($0) }
        var out = [UInt8](repeating: 0, count: 5)
        #expect(out.withUnsafeMutableBytes { buffer.move(into: $0) } == 5)
        #expect(String(decoding: out, as: UTF8.self) == "hello")
        #expect(out.withUnsafeMutableBytes { buffer.move(into: $0, limit: 2) } == 2)
        #expect(String(decoding: out[0..<2], as: UTF8.self) == ", ")
        #expect(buffer.readableCount == 5)
        var rest = [UInt8](repeating: 0, count: 16)
        #expect(rest.withUnsafeMutableBytes { buffer.move(into: $0) } == 5)
        #expect(String(decoding: rest[0..<5], as: UTF8.self) == "world")
        #expect(buffer.isEmpty && rest.withUnsafeMutableBytes { buffer.move(into: $0) } == 0)
    }
}
