import COpenSSL
import Glibc
import SwitchyardIO

/// How Switchyard connects to backends that speak TLS: one OpenSSL client context per distinct
/// setting (CA file, verification), shared by every worker (`SSL_new` on a configured context
/// is thread-safe). Immutable after `init`, hence `@unchecked Sendable`.
///
/// The certificate is verified against the system's CA bundle or `caFile`, and its name
/// against the endpoint's host (or the configured server name), unless verification is turned
/// off explicitly.
public final class TLSClientContext: @unchecked Sendable {
    private let context: OpaquePointer
    public let verifies: Bool

    public init(caFile: String?, verify: Bool) throws(TLSError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError.queued("cannot create a TLS context") }
        func fail(_ what: String) -> TLSError {
            SSL_CTX_free(context)
            return TLSError.queued(what)
        }
        guard sy_tls_configure_client(context, newSessionCallback) == 0 else { throw fail("cannot apply the TLS settings") }
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        guard SSL_CTX_set_alpn_protos(context, alpn, UInt32(alpn.count)) == 0 else { throw fail("cannot set ALPN") }
        if verify {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            if let caFile {
                let pem: [UInt8]
                do {
                    pem = try FileIO.readAll(caFile)
                } catch {
                    SSL_CTX_free(context)
                    throw TLSError("\(error)")
                }
                guard pem.withUnsafeBytes({ sy_tls_add_cas_pem(context, $0.baseAddress, Int32($0.count)) }) > 0 else {
                    throw fail("\(caFile): not a readable PEM file of CA certificates")
                }
            } else {
                guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw fail("cannot load the system's CA certificates") }
            }
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        self.context = context
        self.verifies = verify
    }

    deinit { SSL_CTX_free(context) }

    /// A client-side TLS connection on a connected (or connecting) socket, for `serverName`
    /// (a host name: sent as SNI and checked against the certificate; an IP address: checked
    /// against the certificate's IP entries). `sessions` is the backend's session slot: its
    /// session is offered for resumption, and new ones are stored in it. Nil if OpenSSL cannot
    /// make one.
    public func connect(fd: Int32, serverName: String, sessions: TLSSessionSlot) -> TLSTransport? {
        guard let ssl = SSL_new(context) else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return nil
        }
        if Self.isIPAddress(serverName) {
            if verifies { _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) }
        } else {
            _ = sy_tls_set_server_name(ssl, serverName)
            if verifies { _ = SSL_set1_host(ssl, serverName) }
        }
        if let session = sessions.session { _ = SSL_set_session(ssl, session) }
        _ = SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(sessions).toOpaque())
        SSL_set_connect_state(ssl)
        return TLSTransport(fd: fd, ssl: ssl)
    }

    static func isIPAddress(_ name: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET, name, &storage) == 1 || inet_pton(AF_INET6, name, &storage) == 1
    }
}

/// The last TLS session a backend gave, offered on the next connection to it (an abbreviated
/// handshake). Owned by one worker's pool of that backend: never shared between threads, and
/// outlives its connections (each connection keeps its pool).
public final class TLSSessionSlot {
    fileprivate(set) var session: OpaquePointer?

    public init() {}

    deinit { if let session { SSL_SESSION_free(session) } }

    fileprivate func keep(_ new: OpaquePointer) {
        if let session { SSL_SESSION_free(session) }
        session = new
    }
}

/// OpenSSL hands each new session here (TLS 1.3: with the tickets after the handshake);
/// returning 1 takes ownership of it.
private let newSessionCallback: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl, let session, let slot = SSL_get_ex_data(ssl, 0) else { return 0 }
    Unmanaged<TLSSessionSlot>.fromOpaque(slot).takeUnretainedValue().keep(session)
    return 1
}
