#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/x509v3.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <string.h>

/* OpenSSL's settings are macros with arguments, which Swift does not import; these are the
   ones Switchyard uses, as functions. */

/* A server context with the defaults a security review accepts: TLS 1.2 or 1.3 and up, no
   compression, no renegotiation, the server's cipher order, record buffers released while a
   connection is idle, partial writes (a non-blocking socket), and no server-side session
   cache (session tickets resume instead, sealed with keys the whole process shares: see
   TicketKeys.swift). Returns 0 on success. */
static inline int sy_tls_configure_server(SSL_CTX *ctx, int min_tls13) {
    if (SSL_CTX_set_min_proto_version(ctx, min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    /* Mozilla "intermediate": key exchange on X25519, P-256 and P-384 only, and AEAD suites
       with forward secrecy only (TLS 1.3 suites are all AEAD). */
    if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) return -1;
    if (SSL_CTX_set_cipher_list(ctx,
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) return -1;
    return 0;
}

/* ALPN: the protocols the listener offers, in its order of preference, as a wire-format list
   kept by the caller for the context's life. */
static inline int sy_tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                     const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const unsigned char *offered = (const unsigned char *)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, offered + 1, offered[0], in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* `protocols`: a length byte then the wire-format list (length-prefixed names). */
static inline void sy_tls_set_alpn(SSL_CTX *ctx, const unsigned char *protocols) {
    SSL_CTX_set_alpn_select_cb(ctx, sy_tls_alpn_select, (void *)protocols);
}

static inline void sy_tls_set_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *), void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, callback);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

/* PEM from memory: the proxy reads every file itself (regular files only, non-blocking), so
   OpenSSL is never handed a path it would open (a FIFO there would block the thread). */

/* The private key in `pem` for the context. Returns 1 on success. */
static inline int sy_tls_use_key_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (bio == NULL) return 0;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL) return 0;
    int ok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    return ok;
}

/* The certificate in `pem` and the chain after it, as SSL_CTX_use_certificate_chain_file
   reads a file. Returns 1 on success. */
static inline int sy_tls_use_chain_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (bio == NULL) return 0;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    int ok = leaf != NULL && SSL_CTX_use_certificate(ctx, leaf) == 1 && SSL_CTX_clear_chain_certs(ctx) == 1;
    X509_free(leaf);
    X509 *next;
    while (ok && (next = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, next) != 1) {
            X509_free(next);
            ok = 0;
        }
    }
    if (ok) {
        /* The end of the PEM data is how the loop stops, not an error. */
        unsigned long last = ERR_peek_last_error();
        if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) ERR_clear_error();
    }
    BIO_free(bio);
    return ok;
}

/* The CA certificates in `pem` as the context's trust anchors. Returns how many were added. */
static inline int sy_tls_add_cas_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (bio == NULL) return 0;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, ca) == 1) count++;
        X509_free(ca);
    }
    ERR_clear_error();
    BIO_free(bio);
    return count;
}

/* Seconds until the certificate becomes valid (0 or less once it is). */
static inline long long sy_tls_seconds_until_valid(X509 *cert) {
    int days = 0, seconds = 0;
    if (ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notBefore(cert)) != 1) return 1;
    return (long long)days * 86400 + seconds;
}

/* Seconds until the certificate expires (negative once expired). */
static inline long long sy_tls_seconds_until_expiry(X509 *cert) {
    int days = 0, seconds = 0;
    if (ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notAfter(cert)) != 1) return 0;
    return (long long)days * 86400 + seconds;
}

/* The certificate's `index`-th subjectAltName entry if it is a DNS name that fits `size`:
   1 and the name in `out`; 0 when there are no more entries. Other entry types are skipped. */
static inline int sy_tls_dns_name(X509 *cert, int index, char *out, int size) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return 0;
    int found = 0, seen = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type != GEN_DNS) continue;
        if (seen++ != index) continue;
        const unsigned char *text = ASN1_STRING_get0_data(name->d.dNSName);
        int length = ASN1_STRING_length(name->d.dNSName);
        if (length < size) {
            memcpy(out, text, (size_t)length);
            out[length] = 0;
            found = 1;
        }
        break;
    }
    GENERAL_NAMES_free(names);
    return found;
}

/* A client context for connections to backends: TLS 1.2 and up, no compression, no
   renegotiation, record buffers released while idle, partial writes, and sessions handed to
   `new_session` (which keeps them per backend address for resumption) instead of OpenSSL's
   internal cache.
   A backend that closes without close_notify (Python's ssl, many HTTP servers) ends the
   connection like a plain end of file: otherwise OpenSSL reports a fatal error and marks the
   session it got from that backend unusable. A response cut short is still caught by its
   framing (Content-Length, chunked). Returns 0 on success. */
static inline int sy_tls_configure_client(SSL_CTX *ctx, int (*new_session)(SSL *, SSL_SESSION *)) {
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    return 0;
}

/* SNI for a client connection (a macro in OpenSSL). */
static inline int sy_tls_set_server_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/* Sets up the cipher (AES-256-CBC) and MAC (HMAC-SHA256) that seal or open one session ticket,
   with a 32-byte key for each and the ticket's IV. Returns 1 on success. */
static inline int sy_tls_ticket_init(EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, const unsigned char *aes_key,
                                     const unsigned char *hmac_key, const unsigned char *iv, int encrypt) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)hmac_key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(mac, params) != 1) return 0;
    if (encrypt) return EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, aes_key, iv) == 1;
    return EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, aes_key, iv) == 1;
}
