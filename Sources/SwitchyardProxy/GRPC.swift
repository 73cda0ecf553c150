import SwitchyardHTTP
import SwitchyardHTTP2

/// gRPC as the proxy sees it (gRPC over HTTP/2, `doc/PROTOCOL-HTTP2.md` of grpc/grpc): how a
/// request is recognised, its deadline, and the proxy's own errors as gRPC statuses.
enum GRPC {
    /// `content-type: application/grpc`, alone or with a `+format` or `;parameters`.
    static func isGRPC(contentType: UnsafeRawBufferPointer?) -> Bool {
        guard let contentType, contentType.count >= 16,
              ASCII.equalsLowercased(UnsafeRawBufferPointer(rebasing: contentType[0..<16]), "application/grpc") else { return false }
        return contentType.count == 16 || contentType[16] == UInt8(ascii: "+") || contentType[16] == UInt8(ascii: ";")
    }

    /// `grpc-timeout`: 1 to 8 digits and a unit (H, M, S, m, u, n), as milliseconds rounded up;
    /// nil when malformed (the header is then ignored, as gRPC servers do).
    static func timeoutMs(_ value: UnsafeRawBufferPointer) -> UInt64? {
        guard value.count >= 2, value.count <= 9 else { return nil }
        var amount: UInt64 = 0
        for digit in value.dropLast() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + UInt64(digit - UInt8(ascii: "0"))
        }
        switch value[value.count - 1] {
        case UInt8(ascii: "H"): return amount * 3_600_000
        case UInt8(ascii: "M"): return amount * 60_000
        case UInt8(ascii: "S"): return amount * 1000
        case UInt8(ascii: "m"): return amount
        case UInt8(ascii: "u"): return (amount + 999) / 1000
        case UInt8(ascii: "n"): return (amount + 999_999) / 1_000_000
        default: return nil
        }
    }

    /// The status a gRPC client gets for a proxy error (codes of `grpc/status.h`).
    static func status(_ error: ProxyError) -> Int {
        switch error {
        case .missingToken, .invalidToken: return 16  // UNAUTHENTICATED
        case .unknownVersion: return 5  // NOT_FOUND
        case .malformedRequest: return 3  // INVALID_ARGUMENT (conflicting pins among others)
        case .headTooLarge, .tooManyHeaders, .uriTooLong: return 8  // RESOURCE_EXHAUSTED
        case .httpVersionNotSupported, .methodNotAllowed: return 12  // UNIMPLEMENTED
        case .requestTimeout, .upstreamTimeout: return 4  // DEADLINE_EXCEEDED
        case .upstreamProtocolError: return 13  // INTERNAL
        case .upstreamConnectFailed, .upstreamTLSFailed, .upstreamClosed, .tooManyConnections, .versionUnavailable:
            return 14  // UNAVAILABLE
        }
    }

    /// A `grpc-status` value: 0…16 as gRPC defines them; anything else counts as 2 (UNKNOWN).
    static func statusCode(_ value: UnsafeRawBufferPointer) -> Int {
        guard (1...2).contains(value.count) else { return 2 }
        var code = 0
        for digit in value {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return 2 }
            code = code * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return code <= 16 ? code : 2
    }

    /// `grpc-message`: the text percent-encoded (every byte outside visible ASCII, and "%").
    static func percentEncoded(_ message: String) -> [UInt8] {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
        }
        return out
    }

    /// A proxy error as a Trailers-Only response: HTTP 200 and the status in one HEADERS
    /// frame that ends the stream (the fields after `:status`).
    static func trailersOnly(_ error: ProxyError, message: String, version: [UInt8]?, requestID: RequestID?) -> [H2Field] {
        var fields = [H2Field("content-type", "application/grpc"), H2Field("grpc-status", String(status(error))),
                      H2Field(name: Array("grpc-message".utf8), value: percentEncoded(message))]
        if let requestID { fields.append(requestID.field) }
        if let version { fields.append(H2Field(name: VersionField.nameBytes, value: version)) }
        return fields
    }
}
