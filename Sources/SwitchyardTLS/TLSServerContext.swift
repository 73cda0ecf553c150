import COpenSSL
import Glibc
import SwitchyardIO

/// A listener's TLS configuration: one OpenSSL context per certificate, chosen per handshake by
/// the SNI name against each certificate's names (RFC 6125 wildcards, `X509_check_host`); the
/// first certificate is the default when SNI is absent or matches none.
///
/// One object is shared by every worker (`SSL_new` on a configured context is thread-safe);
/// session tickets are sealed with the process's `TicketKeys`, so a session resumes on any
/// worker and after a certificate reload.
/// Immutable after `init`, hence `@unchecked Sendable`.
public final class TLSServerContext: @unchecked Sendable {
    public struct Certificate: Sendable, Equatable {
        public let certFile: String
        public let keyFile: String

        public init(certFile: String, keyFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// What a loaded certificate says, for logs and `/status`.
    public struct Loaded: Sendable {
        public let certFile: String
        public let subject: String
        /// Seconds until it expires, at load time.
        public let secondsLeft: Int64
        /// When it expires, in seconds since the Unix epoch.
        public let notAfter: Int64
        /// Its DNS names (subjectAltName), which SNI is matched against.
        public let names: [String]
    }

    private let contexts: [OpaquePointer]
    /// The ALPN list in wire format with a leading total length, for the C callback.
    private let alpn: UnsafeMutablePointer<UInt8>
    public let loaded: [Loaded]

    /// Loads and checks every certificate (readable PEM, key matching, not expired); throws
    /// the first problem, naming the file.
    public init(certificates: [Certificate], minimumTLS13: Bool, alpn protocols: [String]) throws(TLSError) {
        precondition(!certificates.isEmpty)
        var contexts: [OpaquePointer] = []
        var loaded: [Loaded] = []
        let wire = protocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        alpn = .allocate(capacity: wire.count + 1)
        alpn[0] = UInt8(wire.count)
        for (index, byte) in wire.enumerated() { alpn[index + 1] = byte }
        do {
            for certificate in certificates {
                let (context, info) = try Self.load(certificate, minimumTLS13: minimumTLS13)
                contexts.append(context)
                loaded.append(info)
                sy_tls_set_alpn(context, alpn)
            }
        } catch {
            for context in contexts { SSL_CTX_free(context) }
            alpn.deallocate()
            throw error
        }
        self.contexts = contexts
        self.loaded = loaded
        if contexts.count > 1 {
            sy_tls_set_servername_callback(contexts[0], serverNameCallback, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    deinit {
        for context in contexts { SSL_CTX_free(context) }
        alpn.deallocate()
    }

    /// A server-side TLS connection on an accepted socket; nil if OpenSSL cannot make one.
    public func accept(fd: Int32) -> TLSTransport? {
        guard let ssl = SSL_new(contexts[0]) else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_accept_state(ssl)
        return TLSTransport(fd: fd, ssl: ssl)
    }

    /// The context whose certificate names `host`, if another than the default.
    fileprivate func context(for host: UnsafePointer<CChar>) -> OpaquePointer? {
        for context in contexts {
            guard let certificate = SSL_CTX_get0_certificate(context) else { continue }
            if X509_check_host(certificate, host, 0, 0, nil) == 1 { return context }
        }
        return nil
    }

    private static func load(_ certificate: Certificate, minimumTLS13: Bool) throws(TLSError) -> (OpaquePointer, Loaded) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError.queued("cannot create a TLS context") }
        func fail(_ what: String) -> TLSError {
            SSL_CTX_free(context)
            return TLSError.queued(what)
        }
        guard sy_tls_configure_server(context, minimumTLS13 ? 1 : 0) == 0,
              SSL_CTX_set_tlsext_ticket_key_evp_cb(context, ticketKeyCallback) == 1 else { throw fail("cannot apply the TLS settings") }
        // Read here, regular files only and without blocking; OpenSSL gets the bytes.
        let key: [UInt8]
        let chain: [UInt8]
        do {
            key = try FileIO.readAll(certificate.keyFile)
            chain = try FileIO.readAll(certificate.certFile)
        } catch {
            SSL_CTX_free(context)
            throw TLSError("\(error)")
        }
        // The key first: set after the certificate, a key that does not match would be refused
        // as "unreadable"; this way the check below names the real problem.
        guard key.withUnsafeBytes({ sy_tls_use_key_pem(context, $0.baseAddress, Int32($0.count)) }) == 1 else {
            throw fail("\(certificate.keyFile): not a readable PEM private key")
        }
        guard chain.withUnsafeBytes({ sy_tls_use_chain_pem(context, $0.baseAddress, Int32($0.count)) }) == 1 else {
            throw fail("\(certificate.certFile): not a readable PEM certificate chain")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw fail("\(certificate.keyFile) does not belong to the certificate in \(certificate.certFile)")
        }
        guard let x509 = SSL_CTX_get0_certificate(context) else { throw fail("\(certificate.certFile): no certificate") }
        let secondsLeft = Int64(sy_tls_seconds_until_expiry(x509))
        guard secondsLeft > 0 else {
            SSL_CTX_free(context)
            throw TLSError("\(certificate.certFile): the certificate has expired")
        }
        let secondsUntilValid = Int64(sy_tls_seconds_until_valid(x509))
        guard secondsUntilValid <= 0 else {
            SSL_CTX_free(context)
            throw TLSError("\(certificate.certFile): the certificate is not valid yet (for another \(secondsUntilValid) s); check its notBefore date and this machine's clock")
        }
        var subject = [CChar](repeating: 0, count: 256)
        X509_NAME_oneline(X509_get_subject_name(x509), &subject, Int32(subject.count))
        let text = String(decoding: subject.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let notAfter = Int64(time(nil)) + secondsLeft
        return (context, Loaded(certFile: certificate.certFile, subject: text, secondsLeft: secondsLeft, notAfter: notAfter,
                                names: dnsNames(x509)))
    }
}

/// SNI: switch the handshake to the certificate that names the requested host.
private let serverNameCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
    ssl, _, argument in
    guard let ssl, let argument, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_OK }
    let owner = Unmanaged<TLSServerContext>.fromOpaque(argument).takeUnretainedValue()
    if let context = owner.context(for: name) { _ = SSL_set_SSL_CTX(ssl, context) }
    return SSL_TLSEXT_ERR_OK
}

/// A certificate's subjectAltName DNS entries, through the C helper (OpenSSL's stack macros
/// are not visible to Swift).
private func dnsNames(_ certificate: OpaquePointer) -> [String] {
    var names: [String] = []
    var index: Int32 = 0
    var buffer = [CChar](repeating: 0, count: 256)
    while sy_tls_dns_name(certificate, index, &buffer, Int32(buffer.count)) == 1 {
        names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        index += 1
    }
    return names
}
