import COpenSSL
import SwitchyardIO

/// The keys that seal TLS session tickets, one set for the whole process: every listener,
/// certificate and worker uses them, so a session resumes on any worker and across a
/// certificate reload. OpenSSL's own keys would be per context and never rotated.
///
/// The current key seals new tickets; it is replaced every `rotationMs`, and the one before
/// it still opens tickets (whose sessions then get a new ticket), so a client resumes for
/// 12 to 24 hours after its last full handshake and a stolen key exposes at most a day.
public final class TicketKeys: @unchecked Sendable {
    struct Key {
        let name: [UInt8]
        let aes: [UInt8]
        let hmac: [UInt8]

        static func random() -> Key {
            var bytes = [UInt8](repeating: 0, count: 80)
            precondition(RAND_bytes(&bytes, Int32(bytes.count)) == 1, "OpenSSL has no random bytes")
            return Key(name: Array(bytes[0..<16]), aes: Array(bytes[16..<48]), hmac: Array(bytes[48..<80]))
        }
    }

    public static let shared = TicketKeys(nowMs: Clock.nowMs())
    public static let rotationMs: UInt64 = 12 * 3600 * 1000

    /// Workers read the keys during handshakes while the control thread rotates them: a lock,
    /// on the handshake path only (not per request), held for a key lookup.
    private let lock = PthreadMutex()
    private var current: Key
    private var previous: Key?
    private var rotatedAtMs: UInt64

    init(nowMs: UInt64) {
        current = .random()
        rotatedAtMs = nowMs
    }

    /// Rotates when the current key is `rotationMs` old; true when it did.
    @discardableResult
    public func rotateIfDue(nowMs: UInt64) -> Bool {
        lock.withLock {
            guard nowMs >= rotatedAtMs + Self.rotationMs else { return false }
            previous = current
            current = .random()
            rotatedAtMs = nowMs
            return true
        }
    }

    /// The ticket key callback's answer (OpenSSL's contract): sealing always uses the current
    /// key (1); opening finds the key by name: 1 for the current key, 2 for the previous one
    /// (the session gets a new ticket), 0 for none (a full handshake), -1 on an error.
    ///
    /// With `renewAlways` (TLS 1.3) an opened ticket always asks for a new one: OpenSSL 3.0
    /// sends a NewSessionTicket after a resumption only then, and a TLS 1.3 client uses each
    /// ticket once (RFC 8446 §C.4), so without it every other reconnect was a full handshake.
    func ticket(name: UnsafeMutablePointer<UInt8>, iv: UnsafeMutablePointer<UInt8>, cipher: OpaquePointer?,
                mac: OpaquePointer?, encrypt: Bool, renewAlways: Bool) -> Int32 {
        lock.withLock {
            if encrypt {
                guard RAND_bytes(iv, 16) == 1 else { return -1 }
                current.name.withUnsafeBufferPointer { name.update(from: $0.baseAddress!, count: 16) }
                return seal(current, cipher, mac, iv, encrypt: true) ? 1 : -1
            }
            let found = lookup(UnsafeRawBufferPointer(start: name, count: 16))
            guard found != 0, let key = found == 1 ? current : previous else { return 0 }
            return seal(key, cipher, mac, iv, encrypt: false) ? (renewAlways ? 2 : found) : -1
        }
    }

    /// 1: the current key's name; 2: the previous one's; 0: neither.
    func lookup(_ name: UnsafeRawBufferPointer) -> Int32 {
        if name.elementsEqual(current.name) { return 1 }
        if let previous, name.elementsEqual(previous.name) { return 2 }
        return 0
    }

    var currentName: [UInt8] { lock.withLock { current.name } }

    private func seal(_ key: Key, _ cipher: OpaquePointer?, _ mac: OpaquePointer?, _ iv: UnsafeMutablePointer<UInt8>, encrypt: Bool) -> Bool {
        key.aes.withUnsafeBufferPointer { aes in
            key.hmac.withUnsafeBufferPointer { hmac in
                sy_tls_ticket_init(cipher, mac, aes.baseAddress, hmac.baseAddress, iv, encrypt ? 1 : 0) == 1
            }
        }
    }
}

/// OpenSSL's session ticket key callback, for every server context.
let ticketKeyCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, OpaquePointer?, OpaquePointer?, Int32) -> Int32 = {
    ssl, name, iv, cipher, mac, encrypt in
    guard let name, let iv else { return -1 }
    return TicketKeys.shared.ticket(
        name: name, iv: iv, cipher: cipher, mac: mac, encrypt: encrypt == 1, renewAlways: SSL_version(ssl) == TLS1_3_VERSION)
}
