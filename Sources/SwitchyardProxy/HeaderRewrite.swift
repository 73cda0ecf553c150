import SwitchyardHTTP
import SwitchyardIO

/// The proxy's one header policy, for every path (HTTP/1.1 or HTTP/2 client, HTTP/1.1 or
/// gRPC backend): which fields go on as received, which are dropped because they describe one
/// connection (RFC 9110 §7.6.1) or are the proxy's to write, which the writer of the outgoing
/// protocol frames itself; and the forwarding fields every forwarded request gets.
enum HeaderRewrite {
    /// What becomes of a field on its way through.
    enum Rule: Equatable {
        /// Goes on as received.
        case copy
        /// Hop-by-hop, or the proxy writes its own (`X-Forwarded-Proto`, `X-Forwarded-Host`, a
        /// response's `X-ANYSCALE-VERSION`).
        case drop
        /// Host, Content-Length, Transfer-Encoding, Upgrade: the head writer of the outgoing
        /// protocol decides, from the message's framing.
        case framing
        /// `X-Forwarded-For`: each earlier hop is kept, in order, before this client.
        case hop
        /// The client's token: it goes on only with `auth.forward_authorization` and when the
        /// version has no upstream token of its own.
        case authorization
    }

    /// A request field on its way to a backend that speaks HTTP/2 (`toHTTP2`) or HTTP/1.1.
    static func request(_ kind: KnownHeader, toHTTP2: Bool) -> Rule {
        switch kind {
        case .connection, .keepAlive, .proxyConnection, .proxyAuthorization, .forwardedProto, .forwardedHost:
            return .drop
        // HTTP/2 allows TE only as "trailers" (nghttp2 checks the client's), and gRPC needs it;
        // towards HTTP/1.1 it describes the client's connection.
        case .te:
            return toHTTP2 ? .copy : .drop
        case .host, .contentLength, .transferEncoding, .upgrade:
            return .framing
        case .forwardedFor:
            return .hop
        case .authorization:
            return .authorization
        case .other, .expect, .anyscaleVersion, .requestID:
            return .copy
        }
    }

    /// A response field on its way to a client that speaks HTTP/2 (`toHTTP2`) or HTTP/1.1.
    static func response(_ kind: KnownHeader, toHTTP2: Bool) -> Rule {
        switch kind {
        case .connection, .keepAlive, .proxyConnection, .te, .proxyAuthorization, .anyscaleVersion:
            return .drop
        case .transferEncoding, .upgrade:
            return toHTTP2 ? .drop : .framing
        case .host:
            return toHTTP2 ? .drop : .copy
        default:
            return .copy
        }
    }

    /// Whether a trailer field may go on (RFC 9110 §6.5.1: none that frames, routes,
    /// authenticates or identifies the message, none that would only be read in a head:
    /// cookies, Forwarded).
    static func mayForwardTrailer(name: UnsafeRawBufferPointer) -> Bool {
        switch KnownHeader.classify(name) {
        case .other:
            return !ASCII.equalsLowercased(name, "cookie") && !ASCII.equalsLowercased(name, "forwarded")
                && !ASCII.equalsLowercased(name, "set-cookie")
        default:
            return false
        }
    }

    /// Whether a `Connection` field of the same HTTP/1.1 head lists this field's name, which
    /// makes it hop-by-hop too (RFC 9110 §7.6.1).
    static func isNamedByConnection(_ field: HeaderField, fields: [HeaderField], head: UnsafeRawBufferPointer) -> Bool {
        let name = field.name.bytes(in: head)
        var named = false
        for connection in fields where connection.kind == .connection {
            ASCII.forEachListElement(connection.value.bytes(in: head)) { option in
                if option.count == name.count && zip(option, name).allSatisfy({ ASCII.lower($0) == ASCII.lower($1) }) {
                    named = true
                }
            }
        }
        return named
    }

    /// How the forwarding fields are spelled: as HTTP/1.1 heads customarily do, or in lowercase
    /// as HTTP/2 requires.
    struct Spelling {
        let forwardedFor: StaticString
        let proxiedHTTP: StaticString
        let proxiedHTTPS: StaticString
        let requestID: [UInt8]

        static let http1 = Spelling(
            forwardedFor: "X-Forwarded-For: ",
            proxiedHTTP: "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ",
            proxiedHTTPS: "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ",
            requestID: RequestIDField.http1Prefix)
        static let http2 = Spelling(
            forwardedFor: "x-forwarded-for: ",
            proxiedHTTP: "\r\nx-forwarded-proto: http\r\nx-forwarded-host: ",
            proxiedHTTPS: "\r\nx-forwarded-proto: https\r\nx-forwarded-host: ",
            requestID: RequestIDField.http2Prefix)
    }

    /// Writes the forwarding fields of a request as `name: value` lines: `X-Forwarded-For` with
    /// every earlier hop in order (`priorHops` calls its argument once per value received) and
    /// this client last; `X-Forwarded-Proto` and `X-Forwarded-Host` as the client asked; the
    /// request id the proxy made, if it made one.
    static func writeForwarding(
        into out: ByteBuffer, _ spelling: Spelling, priorHops: ((UnsafeRawBufferPointer) -> Void) -> Void,
        client: [UInt8], tls: Bool, host: UnsafeRawBufferPointer, requestID: RequestID?
    ) {
        out.append(spelling.forwardedFor)
        priorHops { hop in
            guard !hop.isEmpty else { return }
            out.append(hop)
            out.append(", " as StaticString)
        }
        out.append(client)
        out.append(tls ? spelling.proxiedHTTPS : spelling.proxiedHTTP)
        out.append(host)
        out.append("\r\n" as StaticString)
        requestID?.writeLine(to: out, prefix: spelling.requestID)
    }
}
