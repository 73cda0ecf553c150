import COpenSSL

/// What OpenSSL's error queue says, as text.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let text: String
    /// The peer sent an HTTP request instead of a TLS record.
    let httpRequest: Bool

    public var description: String { text }

    init(_ text: String, httpRequest: Bool = false) {
        self.text = text
        self.httpRequest = httpRequest
    }

    /// Drains this thread's OpenSSL error queue into one message.
    static func queued(_ context: String? = nil) -> TLSError {
        var reasons: [String] = []
        var httpRequest = false
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if ERR_GET_REASON(code) == SSL_R_HTTP_REQUEST { httpRequest = true }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let detail = reasons.isEmpty ? "TLS error" : reasons.joined(separator: "; ")
        return TLSError(context.map { "\($0): \(detail)" } ?? detail, httpRequest: httpRequest)
    }
}
