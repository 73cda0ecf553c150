/// Header names the proxy acts on, recognised once while parsing.
public enum KnownHeader: UInt8, Sendable, CaseIterable {
    case other
    case host
    case contentLength
    case transferEncoding
    case connection
    case keepAlive
    case proxyConnection
    case te
    case upgrade
    case expect
    case authorization
    case proxyAuthorization
    case anyscaleVersion
    case requestID
    case forwardedFor
    case forwardedProto
    case forwardedHost

    /// Classifies a header name, case-insensitively, without allocating.
    public static func classify(_ name: UnsafeRawBufferPointer) -> KnownHeader {
        switch name.count {
        case 2: if ASCII.equalsLowercased(name, "te") { return .te }
        case 4: if ASCII.equalsLowercased(name, "host") { return .host }
        case 6: if ASCII.equalsLowercased(name, "expect") { return .expect }
        case 7:
            if ASCII.equalsLowercased(name, "upgrade") { return .upgrade }
        case 10:
            if ASCII.equalsLowercased(name, "connection") { return .connection }
            if ASCII.equalsLowercased(name, "keep-alive") { return .keepAlive }
        case 12:
            if ASCII.equalsLowercased(name, RequestIDField.name) { return .requestID }
        case 13: if ASCII.equalsLowercased(name, "authorization") { return .authorization }
        case 14: if ASCII.equalsLowercased(name, "content-length") { return .contentLength }
        case 15: if ASCII.equalsLowercased(name, "x-forwarded-for") { return .forwardedFor }
        case 16:
            if ASCII.equalsLowercased(name, "proxy-connection") { return .proxyConnection }
            if ASCII.equalsLowercased(name, "x-forwarded-host") { return .forwardedHost }
        case 17:
            if ASCII.equalsLowercased(name, "transfer-encoding") { return .transferEncoding }
            if ASCII.equalsLowercased(name, "x-forwarded-proto") { return .forwardedProto }
        case 18:
            if ASCII.equalsLowercased(name, VersionField.name) { return .anyscaleVersion }
        case 19:
            if ASCII.equalsLowercased(name, "proxy-authorization") { return .proxyAuthorization }
        default: break
        }
        return .other
    }
}

/// The field that pins a request to a version and names the version that served a response,
/// written here once. HTTP/2 and gRPC carry it lowercased (`name`); the heads the proxy
/// writes for HTTP/1.1 spell it as Anyscale does (`http1Name`).
public enum VersionField {
    public static let name: StaticString = "x-anyscale-version"
    public static let http1Name = String(describing: name).uppercased()
    /// `name`'s bytes, for a field list.
    public static let nameBytes = Array(String(describing: name).utf8)
    /// The request's fields disagree on the version.
    public static let givenTwice: StaticString = "X-ANYSCALE-VERSION is given twice with different values"
}

/// The field that carries a request's id, named here once: kept as the client sent it, made
/// by the proxy when the client sent none, and returned with the response.
public enum RequestIDField {
    public static let name: StaticString = "x-request-id"
    /// `name`'s bytes, for a field list.
    public static let nameBytes = Array(String(describing: name).utf8)
    /// `X-Request-Id: `, as the heads the proxy writes for HTTP/1.1 spell it (each word
    /// capitalised).
    public static let http1Prefix: [UInt8] = {
        var capital = true
        let titled = nameBytes.map { byte in
            defer { capital = byte == UInt8(ascii: "-") }
            return capital && byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
        }
        return titled + Array(": ".utf8)
    }()
    /// `x-request-id: `, for the lines of an HTTP/2 head.
    public static let http2Prefix = nameBytes + Array(": ".utf8)
}
