import Glibc
import Logging
import SwitchyardIO
import SwitchyardProxy

/// The real proxy (one worker, metrics, health checks and the access log on, as in
/// production) running in this process, an allocation-free backend thread,
/// and a blocking keep-alive client with fixed buffers: every malloc counted during a round
/// trip is the proxy's.
final class EndToEnd: @unchecked Sendable {
    static let shared = EndToEnd()

    let client: BlockingClient

    private init() {
        let backendPort = FixedBackend.start()
        let proxyPort = Self.freePort()
        let adminPort = Self.freePort()
        let directory = "/tmp/switchyard-micro-\(getpid())"
        mkdir(directory, 0o700)
        Self.write("\(directory)/switchyard.json", """
            {"listeners": [{"address": "127.0.0.1:\(proxyPort)"}], "admin": {"address": "127.0.0.1:\(adminPort)"},
             "workers": 1, "versions_file": "versions.json", "auth": {"tokens_file": "tokens.txt"},
             "access_log": {"path": "access.log"}}
            """)
        Self.write("\(directory)/versions.json", """
            {"service": "micro", "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": ["127.0.0.1:\(backendPort)"]}]}
            """)
        Self.write("\(directory)/tokens.txt", "bench-token\n")
        let loader = try! ConfigLoader(configPath: "\(directory)/switchyard.json")
        try! ThreadStarter.start(name: "proxy-control") {
            try? Server.run(loader: loader, logger: Logger(label: "micro", factory: { _ in SwiftLogNoOpLogHandler() }))
        }
        client = BlockingClient(port: proxyPort)
        client.warmUp()
    }

    static func freePort() -> UInt16 {
        let fd = try! Socket.listen(on: try! SocketAddress.resolve(host: "127.0.0.1", port: 0)[0], reusePort: false)
        defer { Syscall.close(fd) }
        return UInt16(Socket.localAddress(fd)!.port)
    }

    static func write(_ path: String, _ text: String) {
        let file = fopen(path, "w")!
        fputs(text, file)
        fclose(file)
    }
}

/// Answers every request on every connection with the same small response.
enum FixedBackend {
    static func start() -> UInt16 {
        let listener = try! Socket.listen(on: try! SocketAddress.resolve(host: "127.0.0.1", port: 0)[0], reusePort: false)
        Socket.setBlocking(listener)
        let port = UInt16(Socket.localAddress(listener)!.port)
        try! ThreadStarter.start(name: "backend") {
            while true {
                guard let accepted = try? Syscall.accept(listener) else { continue }
                Socket.setBlocking(accepted.fd)
                try! ThreadStarter.start(name: "backend-conn") { serve(accepted.fd) }
            }
        }
        return port
    }

    static func serve(_ fd: Int32) {
        let response: StaticString = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
        var filled = 0
        while true {
            let count = read(fd, buffer + filled, 65536 - filled)
            if count <= 0 { break }
            filled += count
            // One request has no body here: answer each complete head.
            while let end = headEnd(buffer, filled) {
                _ = send(fd, response.utf8Start, response.utf8CodeUnitCount, Int32(MSG_NOSIGNAL))
                memmove(buffer, buffer + end, filled - end)
                filled -= end
            }
        }
        close(fd)
    }

    static func headEnd(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int? {
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        var index = 3
        while index < count {
            if bytes[index] == 10, bytes[index - 1] == 13, bytes[index - 2] == 10, bytes[index - 3] == 13 { return index + 1 }
            index += 1
        }
        return nil
    }
}

/// A keep-alive HTTP/1.1 client on a blocking socket with preallocated buffers.
final class BlockingClient: @unchecked Sendable {
    let fd: Int32
    private let request: StaticString =
        "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench-token\r\nUser-Agent: micro\r\n\r\n"
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
    private var responseLength = 0

    init(port: UInt16) {
        var connected: Int32 = -1
        for _ in 0..<200 {
            if let (fd, _) = try? Socket.connect(to: try! SocketAddress.resolve(host: "127.0.0.1", port: port)[0]) {
                Socket.setBlocking(fd)
                var pollFD = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pollFD, 1, 1000)
                if Socket.pendingError(fd) == 0 { connected = fd; break }
                close(fd)
            }
            usleep(20_000)
        }
        precondition(connected >= 0, "the proxy did not start")
        fd = connected
    }

    /// The first round trip learns the response length (it is the same every time: the
    /// request id the proxy adds has a fixed length).
    func warmUp() {
        _ = send(fd, request.utf8Start, request.utf8CodeUnitCount, Int32(MSG_NOSIGNAL))
        var filled = 0
        while true {
            filled += read(fd, buffer + filled, 65536 - filled)
            if let end = FixedBackend.headEnd(buffer, filled), filled >= end + 3 {
                responseLength = end + 3
                break
            }
        }
        for _ in 0..<1000 { roundTrip() }
    }

    @inline(__always)
    func roundTrip() {
        _ = send(fd, request.utf8Start, request.utf8CodeUnitCount, Int32(MSG_NOSIGNAL))
        var filled = 0
        while filled < responseLength {
            let count = read(fd, buffer + filled, responseLength - filled)
            precondition(count > 0, "the proxy closed the connection")
            filled += count
        }
    }
}
