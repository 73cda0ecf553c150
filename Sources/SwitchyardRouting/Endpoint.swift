/// A backend address as written in a config file: `host:port` or `[v6]:port`.
/// The host may be a name; the proxy resolves it when the file is loaded.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`; nil when the shape or the port is wrong. Port 0
    /// ("any free port") is for listeners only.
    public init?(parsing text: String, allowPortZero: Bool = false) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // a bare IPv6 address needs brackets
        }
        let hostIsClean = host.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0 != "/" && $0 != "@" }
        guard !host.isEmpty, hostIsClean, !portText.isEmpty, portText.allSatisfy(\.isASCII),
              let port = UInt16(portText), port > 0 || allowPortZero else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
