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
            Everything else is echoed as JSON: version, method, path, headers, body size. \
            With --grpc-port it also serves gRPC there (HTTP/2 without TLS, like a Ray Serve gRPC \
            proxy): every call echoes each message back and ends with grpc-status 0.
            """)

    @Option(help: "The version name this backend reports.")
    var name: String

    @Option(help: "TCP port to listen on (0: any free port, printed on stdout).")
    var port: Int

    @Option(help: "A TCP port to serve gRPC on as well (0: any free port, printed on stdout).")
    var grpcPort: Int?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    func run() throws {
        guard let port = UInt16(exactly: port) else { throw ValidationError("--port must be from 0 to 65535") }
        let grpcPort = try grpcPort.map { port throws(ValidationError) in
            guard let port = UInt16(exactly: port) else { throw ValidationError("--grpc-port must be from 0 to 65535") }
            return port
        }
        let address: SocketAddress
        let grpcAddress: SocketAddress?
        do {
            address = try SocketAddress.resolve(host: host, port: port)[0]
            grpcAddress = try grpcPort.map { port throws(ResolveError) in try SocketAddress.resolve(host: host, port: port)[0] }
        } catch {
            throw ValidationError("\(error)")
        }
        if let grpcAddress {
            let listener: Int32
            do {
                listener = try Socket.listen(on: grpcAddress, reusePort: false)
            } catch {
                throw ValidationError("cannot listen on \(grpcAddress): \(error)")
            }
            Socket.setBlocking(listener)
            print("demo-backend \(name) serving gRPC on \(Socket.localAddress(listener)?.description ?? grpcAddress.description)")
            let backend = DemoGRPCBackend(name: name, listener: listener)
            try ThreadStarter.start(name: "demo-grpc-accept") { backend.run() }
        }
        try DemoBackend(name: name, address: address).run()
    }
}
