import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO

/// A generated `X-Request-Id`: 128 random bits, written as 32 hex digits. Stored inline, so a
/// connection carries no extra heap object for it.
struct RequestID {
    var high: UInt64 = 0
    var low: UInt64 = 0

    func write(to out: ByteBuffer) {
        out.append(hex16: high)
        out.append(hex16: low)
    }

    /// `X-Request-Id: <hex>\r\n`, spelt for HTTP/1.1 unless another `prefix` is given.
    func writeLine(to out: ByteBuffer, prefix: [UInt8] = RequestIDField.http1Prefix) {
        out.append(prefix)
        write(to: out)
        out.append("\r\n" as StaticString)
    }

    /// The field of an HTTP/2 head.
    var field: H2Field { withHex { H2Field(name: RequestIDField.nameBytes, value: Array($0)) } }

    /// Calls `body` with the 32 hex digits, written on the stack.
    func withHex<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { scratch in
            let alphabet: StaticString = "0123456789abcdef"
            for index in 0..<32 {
                let word = index < 16 ? high : low
                scratch[index] = alphabet.utf8Start[Int(word >> (60 - 4 * UInt64(index % 16)) & 0xF)]
            }
            return body(UnsafeRawBufferPointer(scratch))
        }
    }
}
