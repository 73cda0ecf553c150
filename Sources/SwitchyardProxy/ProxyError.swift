import SwitchyardHTTP

/// Why the proxy answered a request itself, or cut a response short.
///
/// Payload-free: a case is a metric label (`label`); the text for the caller travels beside it
/// as a detail. Each case knows its status, which side caused it, and whether another endpoint
/// might do better.
enum ProxyError: Int, CaseIterable, Sendable {
    case malformedRequest
    case headTooLarge
    case tooManyHeaders
    case uriTooLong
    case httpVersionNotSupported
    case methodNotAllowed
    case requestTimeout
    case missingToken
    case invalidToken
    case unknownVersion
    case upstreamConnectFailed
    /// The TLS handshake with every endpoint tried failed (most often: a certificate the
    /// proxy does not trust, or one for another name).
    case upstreamTLSFailed
    case upstreamProtocolError
    case upstreamClosed
    case upstreamTimeout
    case tooManyConnections
    /// The version has no healthy endpoint (or its share fails by its `on_unhealthy` policy).
    case versionUnavailable

    /// A count per case, indexed by `rawValue`, kept inline (no heap). Room for more cases than
    /// there are: `ProxyErrorTests` checks that every case fits.
    typealias Counts = InlineArray<24, UInt64>

    /// Who caused it: the caller, a backend (or a version with none healthy), or the proxy's
    /// own limits.
    enum Origin: Sendable {
        case client, upstream, `internal`
    }

    init(_ error: HTTPParseError) {
        switch error {
        case .headTooLarge: self = .headTooLarge
        case .tooManyHeaders: self = .tooManyHeaders
        case .uriTooLong: self = .uriTooLong
        case .versionNotSupported: self = .httpVersionNotSupported
        case .malformed: self = .malformedRequest
        }
    }

    var status: Int {
        switch self {
        case .malformedRequest: return 400
        case .missingToken, .invalidToken: return 401
        case .unknownVersion: return 404
        case .methodNotAllowed: return 405
        case .requestTimeout: return 408
        case .uriTooLong: return 414
        case .headTooLarge, .tooManyHeaders: return 431
        case .upstreamConnectFailed, .upstreamTLSFailed, .upstreamProtocolError, .upstreamClosed: return 502
        case .tooManyConnections, .versionUnavailable: return 503
        case .upstreamTimeout: return 504
        case .httpVersionNotSupported: return 505
        }
    }

    var origin: Origin {
        switch self {
        case .malformedRequest, .headTooLarge, .tooManyHeaders, .uriTooLong, .httpVersionNotSupported,
             .methodNotAllowed, .requestTimeout, .missingToken, .invalidToken, .unknownVersion:
            return .client
        case .upstreamConnectFailed, .upstreamTLSFailed, .upstreamProtocolError, .upstreamClosed, .upstreamTimeout, .versionUnavailable:
            return .upstream
        case .tooManyConnections:
            return .internal
        }
    }

    /// Whether the request, not sent yet, may still succeed on another endpoint.
    var retryable: Bool { self == .upstreamConnectFailed || self == .upstreamTLSFailed }

    /// The `code` of the JSON body: part of the documented interface, so both 401 cases share one.
    var code: StaticString {
        switch self {
        case .missingToken, .invalidToken: return "unauthorized"
        case .upstreamClosed: return "upstream_protocol_error"
        default: return label
        }
    }

    /// A distinct snake_case name per case, for counters and logs.
    var label: StaticString {
        switch self {
        case .malformedRequest: return "bad_request"
        case .headTooLarge: return "header_too_large"
        case .tooManyHeaders: return "too_many_headers"
        case .uriTooLong: return "uri_too_long"
        case .httpVersionNotSupported: return "http_version_not_supported"
        case .methodNotAllowed: return "method_not_allowed"
        case .requestTimeout: return "request_timeout"
        case .missingToken: return "missing_token"
        case .invalidToken: return "invalid_token"
        case .unknownVersion: return "unknown_version"
        case .upstreamConnectFailed: return "upstream_connect_failed"
        case .upstreamTLSFailed: return "upstream_tls_failed"
        case .upstreamProtocolError: return "upstream_protocol_error"
        case .upstreamClosed: return "upstream_closed"
        case .upstreamTimeout: return "upstream_timeout"
        case .tooManyConnections: return "too_many_connections"
        case .versionUnavailable: return "version_unavailable"
        }
    }

    /// Whether the connection must close after the answer, whatever the request asked for.
    var closesConnection: Bool {
        switch origin {
        case .client: return self != .unknownVersion
        case .upstream, .internal: return self == .tooManyConnections
        }
    }
}
