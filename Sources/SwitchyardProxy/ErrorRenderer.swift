import SwitchyardHTTP
import SwitchyardHTTP2
import SwitchyardIO
import SwitchyardRouting

/// Renders a `ProxyError` as the answer a client gets, in each protocol's form, from the same
/// error: the same status, fields and JSON body over HTTP/1.1 and HTTP/2.
enum ErrorRenderer {
    /// What the answer says besides the error itself.
    struct Context {
        /// `X-ANYSCALE-VERSION: <name>\r\n` once a version was chosen, so that an experiment
        /// counts the failure against it.
        var versionLine: [UInt8]?
        /// The generated request id, when the client sent none.
        var requestID: RequestID?
        /// The connection closes after this answer.
        var close: Bool
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 202: return "Accepted"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 403: return "Forbidden"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }

    static func body(_ error: ProxyError, message: String) -> String {
        "{\"error\":{\"code\":\"\(error.code)\",\"message\":\"\(JSONText.escape(message))\"}}\n"
    }

    /// Appends a complete HTTP/1.1 response with the JSON body
    /// `{"error":{"code":"…","message":"…"}}` to `out`.
    static func http1(_ error: ProxyError, message: String, context: Context, into out: ByteBuffer) {
        let body = body(error, message: message)
        out.append("HTTP/1.1 \(error.status) \(reason(error.status))\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n")
        switch error {
        case .missingToken: out.append("WWW-Authenticate: Bearer realm=\"switchyard\"\r\n" as StaticString)
        case .invalidToken: out.append("WWW-Authenticate: Bearer realm=\"switchyard\", error=\"invalid_token\"\r\n" as StaticString)
        case .tooManyConnections, .versionUnavailable: out.append("Retry-After: 1\r\n" as StaticString)
        default: break
        }
        context.requestID?.writeLine(to: out)
        if let versionLine = context.versionLine { out.append(versionLine) }
        out.append(context.close ? "Connection: close\r\n\r\n" : "\r\n")
        out.append(body)
    }
}

extension ErrorRenderer {
    /// The HTTP/2 form: the response fields (lowercase, after `:status`) for the JSON body of
    /// `body(_:message:)`. `version` is the chosen version's name, if any.
    static func http2Fields(_ error: ProxyError, bodyLength: Int, version: [UInt8]?, requestID: RequestID?) -> [H2Field] {
        var fields = [H2Field("content-type", "application/json"), H2Field("content-length", String(bodyLength))]
        switch error {
        case .missingToken: fields.append(H2Field("www-authenticate", "Bearer realm=\"switchyard\""))
        case .invalidToken: fields.append(H2Field("www-authenticate", "Bearer realm=\"switchyard\", error=\"invalid_token\""))
        case .tooManyConnections, .versionUnavailable: fields.append(H2Field("retry-after", "1"))
        default: break
        }
        if let requestID { fields.append(requestID.field) }
        if let version { fields.append(H2Field(name: VersionField.nameBytes, value: version)) }
        return fields
    }
}
