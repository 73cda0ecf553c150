import CLinuxShims
import Glibc

/// An IPv4 or IPv6 socket address.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    enum Storage: Sendable, Hashable {
        case v4(host: UInt32, port: UInt16)  // network byte order host
        case v6(host: [UInt8], port: UInt16)
    }
    let storage: Storage

    public var port: Int {
        switch storage {
        case .v4(_, let port), .v6(_, let port): return Int(port)
        }
    }

    /// The host part as text (`127.0.0.1`, `::1`).
    public var host: String {
        switch storage {
        case .v4(let host, _):
            var addr = in_addr(s_addr: host)
            return Self.text(AF_INET, &addr)
        case .v6(let bytes, _):
            var addr = in6_addr()
            withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
            return Self.text(AF_INET6, &addr)
        }
    }

    /// 127.0.0.0/8 or ::1 (IPv4-mapped loopback included): reachable from this host only.
    public var isLoopback: Bool {
        switch storage {
        case .v4(let host, _):
            return UInt32(bigEndian: host) >> 24 == 127
        case .v6(let bytes, _):
            let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
            return (bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1) || (mapped && bytes[12] == 127)
        }
    }

    public var description: String {
        switch storage {
        case .v4: return "\(host):\(port)"
        case .v6: return "[\(host)]:\(port)"
        }
    }

    private static func text(_ family: Int32, _ addr: UnsafeRawPointer) -> String {
        var buffer = [UInt8](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = buffer.withUnsafeMutableBufferPointer {
            $0.withMemoryRebound(to: CChar.self) { inet_ntop(family, addr, $0.baseAddress, socklen_t($0.count)) }
        }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }

    init(storage: Storage) { self.storage = storage }

    public static func numericHost(_ host: String, port: UInt16) -> SocketAddress? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return SocketAddress(storage: .v4(host: v4.s_addr, port: port)) }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return SocketAddress(storage: .v6(host: bytes, port: port))
        }
        return nil
    }

    /// Resolves `host` (a name or a numeric address) with getaddrinfo. Blocking: only for
    /// config loading on the control thread, never on a worker.
    public static func resolve(host: String, port: UInt16) throws(ResolveError) -> [SocketAddress] {
        if let numeric = numericHost(host, port: port) { return [numeric] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw ResolveError(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let address = SocketAddress(sockaddr: info.pointee.ai_addr), !result.contains(address) {
                result.append(address)
            }
            cursor = info.pointee.ai_next
        }
        if result.isEmpty { throw ResolveError(host: host, reason: "no IPv4 or IPv6 address") }
        return result
    }

    init?(sockaddr pointer: UnsafePointer<sockaddr>?) {
        guard let pointer else { return nil }
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(pointer).load(as: sockaddr_in.self)
            storage = .v4(host: sin.sin_addr.s_addr, port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            var sin6 = UnsafeRawPointer(pointer).load(as: sockaddr_in6.self)
            let bytes = withUnsafeBytes(of: &sin6.sin6_addr) { Array($0) }
            storage = .v6(host: bytes, port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    var family: Int32 {
        switch storage {
        case .v4: return AF_INET
        case .v6: return AF_INET6
        }
    }

    /// Calls `body` with this address as a `sockaddr`.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch storage {
        case .v4(let host, let port):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = in_addr(s_addr: host)
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let bytes, let port):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }
}

public struct ResolveError: Error, CustomStringConvertible {
    public let host: String
    public let reason: String
    public var description: String { "cannot resolve \(host): \(reason)" }
}
