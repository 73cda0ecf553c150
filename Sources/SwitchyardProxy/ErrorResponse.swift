import SwitchyardIO

/// Responses the proxy makes itself: `{"error":{"code":"…","message":"…"}}` with the status.
enum ErrorResponse {
    static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 431: return "Request Header Fields Too Large"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }

    /// Appends a complete JSON error response to `out`.
    static func write(
        into out: ByteBuffer, status: Int, code: String, message: String,
        extraHeaders: String = "", requestID: RequestID? = nil, close: Bool
    ) {
        let body = "{\"error\":{\"code\":\"\(code)\",\"message\":\"\(JSONText.escape(message))\"}}\n"
        out.append("HTTP/1.1 \(status) \(reason(status))\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n")
        if let requestID {
            out.append("X-Request-Id: " as StaticString)
            requestID.write(to: out)
            out.append("\r\n" as StaticString)
        }
        out.append(extraHeaders)
        out.append(close ? "Connection: close\r\n\r\n" : "\r\n")
        out.append(body)
    }
}

/// JSON string escaping for the few places that write JSON by hand (errors, `/status`).
enum JSONText {
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }

    static func quote(_ text: String) -> String { "\"\(escape(text))\"" }
}
