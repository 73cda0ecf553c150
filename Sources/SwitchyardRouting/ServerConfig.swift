/// The static server configuration (`switchyard.json`). Read at start; a restart applies changes.
public struct ServerConfig: Sendable, Equatable {
    public struct Listener: Sendable, Equatable {
        /// `host:port` to accept client traffic on.
        public var address: Endpoint
        /// Let other processes listen on the same port (SO_REUSEPORT), e.g. the next Switchyard
        /// during a zero-downtime restart. Default false: a port already taken is an error, since
        /// sharing it silently would split traffic between two configurations.
        public var sharePort = false
        /// Terminate TLS on this listener; nil for plain HTTP.
        public var tls: TLS?

        public init(address: Endpoint, sharePort: Bool = false, tls: TLS? = nil) {
            self.address = address
            self.sharePort = sharePort
            self.tls = tls
        }
    }

    /// A TLS listener's certificates and protocol settings.
    public struct TLS: Sendable, Equatable {
        public struct Certificate: Sendable, Equatable {
            /// PEM certificate chain and private key, relative to the config file.
            public var certFile: String
            public var keyFile: String
        }

        /// The first is the default; the others are chosen by SNI against their names.
        public var certificates: [Certificate]
        /// Lowest TLS version accepted: false for 1.2 (the default), true for 1.3.
        public var minimumTLS13 = false
        /// ALPN protocols offered, in order of preference. Default `["h2", "http/1.1"]`
        /// (`["http/1.1"]` with `http2.enabled` false).
        public var alpn = ["h2", "http/1.1"]
    }

    /// HTTP/2 from clients: h2c with prior knowledge on plain listeners, h2 by ALPN on TLS ones.
    /// Each limit stands against a known attack; the defaults are safe for most services.
    public struct HTTP2: Sendable, Equatable {
        /// Accept HTTP/2 at all. Default true.
        public var enabled = true
        /// Streams a connection may have open at once. Default 100.
        public var maxConcurrentStreams = 100
        /// Largest decoded request head (names, values, 32 per field); beyond it the stream is
        /// reset. Default 65536.
        public var maxHeaderListBytes = 65536
        /// Request body bytes a stream may send ahead of what its backend took. Default 65535.
        public var streamWindowBytes = 65535
        /// RST_STREAM frames a client may send in a burst, and regains per second, before the
        /// connection is closed with ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
        /// Defaults 200 and 33.
        public var resetBurst = 200
        public var resetsPerSecond = 33
        /// Frames that carry no request (PRIORITY, WINDOW_UPDATE, SETTINGS, PING, empty DATA) a
        /// client may send in a burst, and regains per second, before the connection is closed
        /// with ENHANCE_YOUR_CALM. Defaults 20000 and 10000.
        public var overheadFrameBurst = 20_000
        public var overheadFramesPerSecond = 10_000
        /// CONTINUATION frames allowed after one HEADERS frame (CVE-2024-27316). Default 8.
        public var maxContinuations = 8
        /// HPACK decoder table the client may use. Default 4096.
        public var headerTableBytes = 4096
    }

    public struct Auth: Sendable, Equatable {
        /// Tokens file, relative to the config file. Required unless `disabled`.
        public var tokensFile: String? = nil
        /// Serve without authentication. Default false: Switchyard refuses to start without tokens.
        public var disabled = false
        /// Pass the client's `Authorization` header to the backend. Default false.
        public var forwardAuthorization = false
    }

    public struct Timeouts: Sendable, Equatable {
        /// Longest wait for a backend connection to open, before trying the next endpoint. Default 2000.
        public var connectMs = 2000
        /// Longest time a client may take to send a complete request head (408 after). Default 10000.
        public var requestHeadMs = 10000
        /// Keep-alive connections idle this long are closed. Default 60000.
        public var idleMs = 60000
        /// Longest silence from a backend while a response is awaited or streaming (504 before the head). Default 300000.
        public var responseMs = 300_000
        /// Idle backend keep-alive connections are closed after this long. Default 4000: below the
        /// 5 s keep-alive timeout of uvicorn, Ray Serve's HTTP server, so a backend rarely closes a
        /// connection just as it is reused.
        public var upstreamIdleMs = 4000
        /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default 15000.
        public var drainMs = 15000
        /// A TLS connection must finish its handshake (and begin its first request) within
        /// this time. Default 10000.
        public var tlsHandshakeMs = 10000
    }

    public struct Limits: Sendable, Equatable {
        /// Largest request head in bytes (431 beyond). Default 65536.
        public var maxHeadBytes = 65536
        /// Most header fields in a request (431 beyond). Default 100.
        public var maxHeaders = 100
        /// Longest request target in bytes (414 beyond). Default 8192.
        public var maxURIBytes = 8192
        /// Most client connections open at once, over all workers. Default (nil): as many as the
        /// descriptor limit allows, two descriptors per busy connection.
        public var maxConnections: Int?
        /// Endpoints a request tries before it is answered 502 (or 504): each failed connect
        /// costs up to `timeouts.connect_ms`. Of ejected or unhealthy endpoints, tried only
        /// when no other is left, one at most. Default 3.
        public var maxConnectAttempts = 3
    }

    /// One JSON line per finished request. Off unless configured: at tens of thousands of
    /// requests a second a log is a deliberate choice (its disk, its rotation).
    public struct AccessLog: Sendable, Equatable {
        /// A file (appended to, reopened on SIGUSR1 for logrotate), or "-" for standard output.
        public var path: String
        /// Share of successful requests logged, 1–100; errors (5xx, the proxy's own answers)
        /// are always logged. Default 100.
        public var samplePercent = 100
        /// Log the query string too. Default false: queries often carry personal data.
        public var query = false

        public init(path: String, samplePercent: Int = 100, query: Bool = false) {
            self.path = path
            self.samplePercent = samplePercent
            self.query = query
        }
    }

    /// Where client traffic is accepted. Default one listener on 127.0.0.1:8080.
    public var listeners: [Listener] = [Listener(address: Endpoint(host: "127.0.0.1", port: 8080))]
    /// The admin API (`/healthz`, `/status`). Default 127.0.0.1:9901. Never shares a port with clients.
    public var admin = Endpoint(host: "127.0.0.1", port: 9901)
    /// A file holding the token of the admin API's write endpoints (`POST /v1/deploy`,
    /// `POST /v1/revert`), relative to the config file; nil (the default): they answer 404.
    public var adminWriteTokenFile: String?
    /// Worker threads; 0 (default) means one per CPU core.
    public var workers = 0
    /// The versions file, relative to the config file. Default `versions.json`.
    public var versionsFile = "versions.json"
    /// How often endpoint names are resolved again (also on SIGHUP); 0 turns it off. Default 30000.
    public var resolveIntervalMs = 30_000
    public var auth = Auth()
    /// nil: no access log (the default).
    public var accessLog: AccessLog?
    /// A file every write of the versions file (deploy, revert, admin API) appends its record
    /// to, one JSON line each, relative to the config file; nil (the default): none.
    public var auditLog: String?
    /// Health checks and `retry_other_version` for versions that do not set their own.
    public var versionDefaults = VersionsConfig.Defaults()
    public var timeouts = Timeouts()
    public var limits = Limits()
    public var http2 = HTTP2()

    public init() {}

    /// The settings that differ from `other`, by their names in the file (`timeouts`,
    /// `limits`, …): what a SIGHUP cannot apply without a restart.
    public func changedSettings(from other: ServerConfig) -> [String] {
        var changed: [String] = []
        if listeners != other.listeners { changed.append("listeners") }
        if admin != other.admin { changed.append("admin") }
        if workers != other.workers { changed.append("workers") }
        if versionsFile != other.versionsFile { changed.append("versions_file") }
        if resolveIntervalMs != other.resolveIntervalMs { changed.append("resolve_interval_ms") }
        if auth != other.auth { changed.append("auth") }
        if versionDefaults.healthCheck != other.versionDefaults.healthCheck { changed.append("health_check") }
        if versionDefaults.retryOtherVersion != other.versionDefaults.retryOtherVersion { changed.append("retry_other_version") }
        if accessLog != other.accessLog { changed.append("access_log") }
        if timeouts != other.timeouts { changed.append("timeouts") }
        if limits != other.limits { changed.append("limits") }
        if http2 != other.http2 { changed.append("http2") }
        return changed
    }

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> ServerConfig {
        let root = try JSONParser.parse(bytes, file: file)
        var reader = try ObjectReader(root, file: file, path: "")
        var config = ServerConfig()
        if var http2 = try reader.object("http2") {
            config.http2 = try Self.http2(&http2)
            try http2.finish()
        }
        if let listeners = try reader.array("listeners") {
            guard !listeners.isEmpty else {
                throw ConfigError(file: file, position: root.position, message: "listeners is empty; give at least one {\"address\": \"host:port\"}")
            }
            config.listeners = []
            for (index, node) in listeners.enumerated() {
                var listener = try ObjectReader(node, file: file, path: "listeners[\(index)]")
                let address = try Self.address(&listener, file: file)
                let sharePort = try listener.bool("share_port") ?? false
                let tls = try listener.object("tls").map { reader throws(ConfigError) in
                    try Self.tls(reader, file: file, http2: config.http2.enabled)
                }
                try listener.finish()
                config.listeners.append(Listener(address: address, sharePort: sharePort, tls: tls))
            }
        }
        if var admin = try reader.object("admin") {
            config.admin = try Self.address(&admin, file: file)
            if let tokenFile = try admin.string("write_token_file") {
                guard !tokenFile.isEmpty else { throw admin.error(admin.node, "admin.write_token_file is empty; give a file holding the write token, or leave it out") }
                config.adminWriteTokenFile = tokenFile
            }
            try admin.finish()
        }
        for listener in config.listeners where listener.address == config.admin && config.admin.port != 0 {
            throw ConfigError(file: file, position: root.position, message: "admin.address \(config.admin) is also a client listener; give the admin API its own port")
        }
        config.workers = try reader.integer("workers", in: 0...1024) ?? 0
        if let versionsFile = try reader.string("versions_file") {
            guard !versionsFile.isEmpty else { throw ConfigError(file: file, position: root.position, message: "versions_file is empty") }
            config.versionsFile = versionsFile
        }
        config.resolveIntervalMs = try reader.integer("resolve_interval_ms", in: 0...86_400_000) ?? config.resolveIntervalMs
        if var auth = try reader.object("auth") {
            config.auth.tokensFile = try auth.string("tokens_file")
            config.auth.disabled = try auth.bool("disabled") ?? false
            config.auth.forwardAuthorization = try auth.bool("forward_authorization") ?? false
            try auth.finish()
        }
        if config.auth.tokensFile == nil && !config.auth.disabled {
            throw ConfigError(file: file, position: root.position,
                              message: "no tokens file: set auth.tokens_file to a file of Bearer tokens, or set auth.disabled to true to serve without authentication")
        }
        if var log = try reader.object("access_log") {
            guard let path = try log.string("path"), !path.isEmpty else {
                throw log.error(log.node, "access_log needs \"path\": a file to append to, or \"-\" for standard output")
            }
            var accessLog = AccessLog(path: path)
            accessLog.samplePercent = try log.integer("sample_percent", in: 1...100) ?? 100
            accessLog.query = try log.bool("query") ?? false
            try log.finish()
            config.accessLog = accessLog
        }
        if let auditLog = try reader.string("audit_log") {
            guard !auditLog.isEmpty else { throw ConfigError(file: file, position: root.position, message: "audit_log is empty; give a file to append to, or leave it out") }
            config.auditLog = auditLog
        }
        if let node = reader.take("health_check") {
            config.versionDefaults.healthCheck = try HealthCheck.parse(node, over: nil, file: file, path: "health_check")
        }
        config.versionDefaults.retryOtherVersion = try reader.bool("retry_other_version") ?? false
        if var timeouts = try reader.object("timeouts") {
            let day = 86_400_000
            config.timeouts.connectMs = try timeouts.integer("connect_ms", in: 1...day) ?? config.timeouts.connectMs
            config.timeouts.requestHeadMs = try timeouts.integer("request_head_ms", in: 1...day) ?? config.timeouts.requestHeadMs
            config.timeouts.idleMs = try timeouts.integer("idle_ms", in: 1...day) ?? config.timeouts.idleMs
            config.timeouts.responseMs = try timeouts.integer("response_ms", in: 1...day) ?? config.timeouts.responseMs
            config.timeouts.upstreamIdleMs = try timeouts.integer("upstream_idle_ms", in: 1...day) ?? config.timeouts.upstreamIdleMs
            config.timeouts.drainMs = try timeouts.integer("drain_ms", in: 0...day) ?? config.timeouts.drainMs
            config.timeouts.tlsHandshakeMs = try timeouts.integer("tls_handshake_ms", in: 1...day) ?? config.timeouts.tlsHandshakeMs
            try timeouts.finish()
        }
        if var limits = try reader.object("limits") {
            config.limits.maxHeadBytes = try limits.integer("max_head_bytes", in: 1024...(1 << 24)) ?? config.limits.maxHeadBytes
            config.limits.maxHeaders = try limits.integer("max_headers", in: 8...10000) ?? config.limits.maxHeaders
            config.limits.maxURIBytes = try limits.integer("max_uri_bytes", in: 64...(1 << 24)) ?? config.limits.maxURIBytes
            config.limits.maxConnections = try limits.integer("max_connections", in: 1...10_000_000)
            config.limits.maxConnectAttempts = try limits.integer("max_connect_attempts", in: 1...256) ?? config.limits.maxConnectAttempts
            try limits.finish()
        }
        try reader.finish()
        return config
    }

    private static func http2(_ reader: inout ObjectReader) throws(ConfigError) -> HTTP2 {
        var http2 = HTTP2()
        http2.enabled = try reader.bool("enabled") ?? true
        http2.maxConcurrentStreams = try reader.integer("max_concurrent_streams", in: 1...10000) ?? http2.maxConcurrentStreams
        http2.maxHeaderListBytes = try reader.integer("max_header_list_bytes", in: 1024...(1 << 24)) ?? http2.maxHeaderListBytes
        http2.streamWindowBytes = try reader.integer("stream_window_bytes", in: 1024...Int(Int32.max)) ?? http2.streamWindowBytes
        http2.resetBurst = try reader.integer("reset_burst", in: 1...1_000_000) ?? http2.resetBurst
        http2.resetsPerSecond = try reader.integer("resets_per_second", in: 1...1_000_000) ?? http2.resetsPerSecond
        http2.overheadFrameBurst = try reader.integer("overhead_frame_burst", in: 1...10_000_000) ?? http2.overheadFrameBurst
        http2.overheadFramesPerSecond = try reader.integer("overhead_frames_per_second", in: 1...10_000_000) ?? http2.overheadFramesPerSecond
        http2.maxContinuations = try reader.integer("max_continuations", in: 0...1000) ?? http2.maxContinuations
        http2.headerTableBytes = try reader.integer("header_table_bytes", in: 0...(1 << 20)) ?? http2.headerTableBytes
        return http2
    }

    private static func tls(_ reader: ObjectReader, file: String, http2: Bool) throws(ConfigError) -> TLS {
        var reader = reader
        let certificatesNode = try reader.required("certificates")
        guard case .array(let nodes) = certificatesNode.value, !nodes.isEmpty else {
            throw reader.error(certificatesNode, """
                \(reader.fieldPath("certificates")) must be a non-empty array of {"cert_file": "server.pem", "key_file": "server.key"}
                """)
        }
        var certificates: [TLS.Certificate] = []
        for (index, node) in nodes.enumerated() {
            var certificate = try ObjectReader(node, file: file, path: "\(reader.fieldPath("certificates"))[\(index)]")
            let certFile = try certificate.string("cert_file") ?? ""
            let keyFile = try certificate.string("key_file") ?? ""
            guard !certFile.isEmpty, !keyFile.isEmpty else {
                throw certificate.error(node, "\(certificate.path) needs \"cert_file\" and \"key_file\" (PEM files, relative to this file)")
            }
            try certificate.finish()
            certificates.append(TLS.Certificate(certFile: certFile, keyFile: keyFile))
        }
        var tls = TLS(certificates: certificates)
        if !http2 { tls.alpn = ["http/1.1"] }
        if let version = reader.take("min_version") {
            switch version.value {
            case .string("1.2"): tls.minimumTLS13 = false
            case .string("1.3"): tls.minimumTLS13 = true
            default: throw reader.error(version, "\(reader.fieldPath("min_version")) must be \"1.2\" or \"1.3\" (older versions are not offered)")
            }
        }
        if let alpn = try reader.array("alpn") {
            var protocols: [String] = []
            for node in alpn {
                guard case .string(let name) = node.value, name == "http/1.1" || name == "h2" else {
                    throw reader.error(node, "\(reader.fieldPath("alpn")) may list \"h2\" and \"http/1.1\"")
                }
                guard name == "http/1.1" || http2 else {
                    throw reader.error(node, "\(reader.fieldPath("alpn")) offers h2 but http2.enabled is false")
                }
                guard !protocols.contains(name) else { throw reader.error(node, "\(reader.fieldPath("alpn")) lists \"\(name)\" twice") }
                protocols.append(name)
            }
            guard !protocols.isEmpty else { throw reader.error(reader.node, "\(reader.fieldPath("alpn")) is empty; leave it out for the default") }
            tls.alpn = protocols
        }
        try reader.finish()
        return tls
    }

    private static func address(_ reader: inout ObjectReader, file: String) throws(ConfigError) -> Endpoint {
        let node = try reader.required("address")
        guard case .string(let text) = node.value, let endpoint = Endpoint(parsing: text, allowPortZero: true) else {
            throw ConfigError(file: file, position: node.position, message: "\(reader.fieldPath("address")) must be \"host:port\" or \"[v6]:port\"")
        }
        return endpoint
    }
}
