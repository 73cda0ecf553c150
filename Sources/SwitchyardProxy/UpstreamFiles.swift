import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// The files the versions name for reaching their backends: CA bundles (`tls.ca_file`) and
/// upstream tokens (`upstream_bearer_token_file`), relative to the versions file. Read when
/// the versions change and again on every reload, so a rotated token or CA bundle is picked
/// up by the same watcher and SIGHUP as the hot files; a new content that is invalid keeps the
/// last good one.
///
/// A TLS client context is made once per distinct setting and CA content and kept while it is
/// in use: workers key their backend pools (and the TLS sessions in them) by it.
public struct UpstreamFiles: Sendable {
    private struct Context {
        let caContent: [UInt8]
        let context: TLSClientContext
    }

    private struct Token {
        let content: [UInt8]
        /// `Authorization: Bearer <token>\r\n`
        let line: [UInt8]
    }

    /// Paths in the versions file are relative to it.
    public let directory: String
    private var contexts: [UpstreamTLS: Context] = [:]
    private var tokens: [String: Token] = [:]

    public init(versionsPath: String) {
        directory = FileWatcher.split(versionsPath).directory
    }

    public func path(_ relative: String) -> String {
        relative.hasPrefix("/") ? relative : "\(directory)/\(relative)"
    }

    /// Every file in use, for the file watcher.
    var paths: [String] {
        contexts.keys.compactMap { $0.caFile.map(path) } + tokens.keys.map(path)
    }

    /// Reads the files `versions` names. Nothing changes when one is invalid (the error names
    /// it and its version); otherwise returns whether anything differs from before.
    @discardableResult
    public mutating func load(_ versions: VersionsConfig) throws(LoadError) -> Bool {
        var newContexts: [UpstreamTLS: Context] = [:]
        var newTokens: [String: Token] = [:]
        var changed = false
        for version in versions.versions {
            if let tls = version.tls, newContexts[tls] == nil {
                let content = try tls.caFile.map { file throws(LoadError) in try read(file, field: "tls.ca_file", of: version.name) } ?? []
                if let kept = contexts[tls], kept.caContent == content {
                    newContexts[tls] = kept
                } else {
                    do {
                        let context = try TLSClientContext(caFile: tls.caFile.map(path), verify: !tls.insecureSkipVerify)
                        newContexts[tls] = Context(caContent: content, context: context)
                        changed = true
                    } catch {
                        throw LoadError("version \"\(version.name)\": tls: \(error)")
                    }
                }
            }
            if let file = version.upstreamTokenFile, newTokens[file] == nil {
                let content = try read(file, field: "upstream_bearer_token_file", of: version.name)
                if let kept = tokens[file], kept.content == content {
                    newTokens[file] = kept
                } else {
                    guard let token = Self.token(in: content) else {
                        throw LoadError("""
                            \(path(file)): version "\(version.name)": upstream_bearer_token_file must hold one token \
                            (1 to 4096 visible ASCII characters, no spaces) and nothing else
                            """)
                    }
                    newTokens[file] = Token(content: content, line: Array("Authorization: Bearer ".utf8) + token + Array("\r\n".utf8))
                    changed = true
                }
            }
        }
        if Set(newContexts.keys) != Set(contexts.keys) || Set(newTokens.keys) != Set(tokens.keys) { changed = true }
        contexts = newContexts
        tokens = newTokens
        return changed
    }

    /// How the workers reach each version's backends; `serverNames[version][target]` is the
    /// endpoint host each resolved address came from.
    func upstreams(_ versions: VersionsConfig, serverNames: [[String]]) -> [VersionUpstream] {
        zip(versions.versions, serverNames).map { version, names in
            VersionUpstream(
                // `load` made a context for every TLS setting of these versions; a version
                // without one must never fall back to plain text.
                tls: version.tls.map { tls in
                    guard let context = contexts[tls]?.context else { preconditionFailure("no TLS context loaded for version \(version.name)") }
                    return context
                },
                serverNames: version.tls?.serverName.map { name in names.map { _ in name } } ?? names,
                authorization: version.upstreamTokenFile.flatMap { tokens[$0]?.line })
        }
    }

    /// Versions whose backends' certificates are not verified, for the warning at start.
    static func unverified(_ versions: VersionsConfig) -> [String] {
        versions.versions.filter { $0.tls?.insecureSkipVerify == true }.map(\.name)
    }

    private func read(_ file: String, field: String, of version: String) throws(LoadError) -> [UInt8] {
        do {
            return try FileIO.readAll(path(file))
        } catch {
            throw LoadError("\(path(file)): version \"\(version)\": cannot read its \(field) (\(error)); the path is relative to the versions file")
        }
    }

    /// The token a file holds: its content without surrounding white space; nil unless that
    /// is 1–4096 visible ASCII characters.
    static func token(in content: [UInt8]) -> [UInt8]? {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        guard let first = content.firstIndex(where: { !isSpace($0) }), let last = content.lastIndex(where: { !isSpace($0) }) else { return nil }
        let token = Array(content[first...last])
        guard token.count <= 4096, token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return token
    }
}
