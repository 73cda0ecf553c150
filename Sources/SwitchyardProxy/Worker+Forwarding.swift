import SwitchyardHTTP
import SwitchyardIO

/// Rewriting heads on their way through: hop-by-hop fields out, forwarding fields in.
extension Worker {
    /// Writes the request head for the backend: the request line with the target in
    /// origin-form, end-to-end fields, a normalised Content-Length, and `X-Forwarded-*` /
    /// `X-Request-Id`. A version with an upstream token gets it as the only `Authorization`.
    func writeForwardedRequestHead(_ d: DownstreamConnection, _ x: Exchange, head: UnsafeRawBufferPointer, into out: ByteBuffer) {
        let request = d.machine.request
        let upstreamAuthorization = x.routes?.authorizationLines[x.versionIndex]
        if !request.hostFromTarget {
            // method SP target SP HTTP/1.x CRLF, as received
            out.append(UnsafeRawBufferPointer(rebasing: head[0..<(Int(request.target.end) + 11)]))
        } else {
            // An absolute-form target goes on as its path; its authority becomes the Host.
            out.append(UnsafeRawBufferPointer(rebasing: head[0..<Int(request.target.start)]))
            if request.originNeedsSlash { out.append("/" as StaticString) }
            out.append(request.originTarget.bytes(in: head))
            out.append(UnsafeRawBufferPointer(rebasing: head[Int(request.target.end)..<(Int(request.target.end) + 11)]))
            out.append("Host: " as StaticString)
            out.append(request.host.bytes(in: head))
            out.append("\r\n" as StaticString)
        }
        var hadContentLength = false
        var forwardedFor = 0
        for field in request.fields {
            switch HeaderRewrite.request(field.kind, toHTTP2: false) {
            case .drop:
                continue
            case .hop:
                forwardedFor += 1
                continue
            case .framing:
                switch field.kind {
                case .host: if request.hostFromTarget { continue }
                case .upgrade: if !request.upgrade { continue }
                case .contentLength:
                    hadContentLength = true
                    continue
                default: break  // Transfer-Encoding: a chunked body goes on in its framing.
                }
            case .authorization:
                if !settings.forwardAuthorization || upstreamAuthorization != nil { continue }
            case .copy:
                if request.hasConnectionOptions && field.kind == .other
                    && HeaderRewrite.isNamedByConnection(field, fields: request.fields, head: head) { continue }
            }
            out.append(field.line.bytes(in: head))
        }
        if case .contentLength(let length) = request.framing {
            out.append("Content-Length: " as StaticString)
            out.append(decimal: length)
            out.append("\r\n" as StaticString)
        } else if hadContentLength {
            out.append("Content-Length: 0\r\n" as StaticString)
        }
        if request.upgrade { out.append("Connection: upgrade\r\n" as StaticString) }
        if let upstreamAuthorization { out.append(upstreamAuthorization) }
        HeaderRewrite.writeForwarding(
            into: out, .http1,
            priorHops: { hop in
                guard forwardedFor > 0 else { return }
                for field in request.fields where field.kind == .forwardedFor { hop(field.value.bytes(in: head)) }
            },
            client: d.clientAddress, tls: d.transport.isTLS, host: request.host.bytes(in: head),
            requestID: x.generatedRequestID ? x.requestID : nil)
        out.append("\r\n" as StaticString)
    }

    /// Writes the response head for the client: status line unchanged, end-to-end fields,
    /// the version that served it, and how the connection continues.
    func writeH1ResponseHead(_ d: DownstreamConnection, _ x: Exchange, _ u: UpstreamConnection, headLength: Int) {
        let head = UnsafeRawBufferPointer(rebasing: u.input.readableBytes[0..<headLength])
        let response = u.machine.response
        let out = d.output
        let switching = response.status == 101
        if response.framing == .untilClose || draining { x.keepAlive = false }
        out.append(response.statusLine.bytes(in: head))
        var sawRequestID = false
        for field in response.fields {
            switch HeaderRewrite.response(field.kind, toHTTP2: false) {
            case .drop:
                continue
            case .framing:
                if field.kind == .upgrade && !switching { continue }
            default:
                if field.kind == .requestID { sawRequestID = true }
                if response.hasConnectionOptions && field.kind == .other
                    && HeaderRewrite.isNamedByConnection(field, fields: response.fields, head: head) { continue }
            }
            out.append(field.line.bytes(in: head))
        }
        if let routes = x.routes { out.append(routes.versionHeaderLines[x.versionIndex]) }
        if x.generatedRequestID && !sawRequestID {
            x.requestID.writeLine(to: out)
        }
        if switching {
            out.append("Connection: upgrade\r\n" as StaticString)
        } else if !x.keepAlive {
            out.append("Connection: close\r\n" as StaticString)
        } else if d.machine.request.version == .http10 {
            out.append("Connection: keep-alive\r\n" as StaticString)
        }
        out.append("\r\n" as StaticString)
    }
}
