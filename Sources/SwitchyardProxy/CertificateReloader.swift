import SwitchyardIO
import SwitchyardRouting
import SwitchyardTLS

/// The TLS listeners' certificates as the control thread keeps them: reloaded when their files
/// change (the same watcher and SIGHUP as the hot files), kept when the new files are invalid.
struct CertificateReloader {
    struct Listener {
        let index: Int
        let settings: ServerConfig.TLS
        /// The bytes of every certificate and key file, to tell a real change from another
        /// file's event in the same directory.
        var content: [UInt8]
        var context: TLSServerContext
        /// Why the files on disk are not in use, while they are not.
        var error: String?
    }

    private(set) var listeners: [Listener] = []
    var hasListeners: Bool { !listeners.isEmpty }
    /// Contexts replaced by a reload. Connections accepted with one may still be in their
    /// handshake, whose SNI callback points at it, so they are kept for the process's life
    /// (a few KiB per certificate change).
    private var retired: [TLSServerContext] = []
    private let loader: ConfigLoader

    init(loader: ConfigLoader, contexts: [TLSServerContext?]) {
        self.loader = loader
        for (index, (listener, context)) in zip(loader.server.listeners, contexts).enumerated() {
            guard let settings = listener.tls, let context else { continue }
            listeners.append(Listener(index: index, settings: settings, content: Self.content(settings, loader: loader), context: context))
        }
    }

    /// Every certificate and key path, for the file watcher.
    static func paths(_ config: ServerConfig, loader: ConfigLoader) -> [String] {
        config.listeners.compactMap(\.tls).flatMap { $0.certificates.flatMap { [loader.path($0.certFile), loader.path($0.keyFile)] } }
    }

    /// Reloads the listeners whose files changed: the new contexts to hand to the workers, and
    /// the problems of files that stay out (their last good certificates stay in use).
    mutating func reload() -> (changed: [(listener: Int, context: TLSServerContext)], errors: [String]) {
        var changed: [(listener: Int, context: TLSServerContext)] = []
        var errors: [String] = []
        for position in listeners.indices {
            let listener = listeners[position]
            let content = Self.content(listener.settings, loader: loader)
            guard content != listener.content else { continue }
            do {
                let context = try TLSServerContext(
                    certificates: listener.settings.certificates.map { .init(certFile: loader.path($0.certFile), keyFile: loader.path($0.keyFile)) },
                    minimumTLS13: listener.settings.minimumTLS13, alpn: listener.settings.alpn)
                retired.append(listener.context)
                listeners[position].context = context
                listeners[position].content = content
                listeners[position].error = nil
                changed.append((listener.index, context))
            } catch {
                let message = "listeners[\(listener.index)].tls: \(error); the certificates loaded before stay in use"
                // Reported once per content: an unchanged broken file is not reported again.
                if listeners[position].error != message { errors.append(message) }
                listeners[position].error = message
                listeners[position].content = content
            }
        }
        return (changed, errors)
    }

    private static func content(_ settings: ServerConfig.TLS, loader: ConfigLoader) -> [UInt8] {
        settings.certificates.flatMap { certificate in
            ((try? FileIO.readAll(loader.path(certificate.certFile))) ?? [0]) + [0xFF] + ((try? FileIO.readAll(loader.path(certificate.keyFile))) ?? [0])
        }
    }
}
