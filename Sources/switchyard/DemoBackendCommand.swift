import ArgumentParser
import SwitchyardIO
import SwitchyardRouting

struct DemoBackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-backend",
        abstract: "A small HTTP server standing in for one version of a service, for demos and tests.",
        discussion: """
            GET /-/healthz answers "success" like Ray Serve. GET /stream?chunks=N&interval_ms=M sends N \
            server-sent events M ms apart. GET /bytes?n=N sends N bytes. /status/N answers with status N. \
            ?delay_ms=M on any echo request waits M ms first. A WebSocket upgrade echoes frames. \
            Everything else is echoed as JSON: version, method, path, headers, body size.
            """)

    @Option(help: "The version name this backend reports.")
    var name: String

    @Option(help: "TCP port to listen on (0: any free port, printed on stdout).")
    var port: Int

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    func run() throws {
        guard let port = UInt16(exactly: port) else { throw ValidationError("--port must be from 0 to 65535") }
        let address: SocketAddress
        do {
            address = try SocketAddress.resolve(host: host, port: port)[0]
        } catch {
            throw ValidationError("\(error)")
        }
        try DemoBackend(name: name, address: address).run()
    }
}
