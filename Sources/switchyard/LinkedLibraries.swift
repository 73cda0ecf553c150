import CNGHTTP2
import COpenSSL

/// The C libraries linked in (TLS and HTTP/2 build on them).
enum LinkedLibraries {
    static var versions: [(String, String)] {
        let openssl = String(cString: OpenSSL_version(OPENSSL_VERSION))
        let nghttp2 = nghttp2_version(0).map { String(cString: $0.pointee.version_str) } ?? "unknown"
        return [("openssl", openssl), ("nghttp2", nghttp2)]
    }
}
