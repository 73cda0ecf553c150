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
    let h2Client: BlockingH2Client

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
        h2Client = BlockingH2Client(port: proxyPort)
        h2Client.warmUp()
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

/// An h2c client (prior knowledge) on a blocking socket with preallocated buffers: one request
/// per stream, one stream at a time, on one connection. The request is a fixed HPACK block
/// (no dynamic table), so every stream costs the client nothing but the two system calls.
final class BlockingH2Client: @unchecked Sendable {
    private let connection: BlockingClient
    private var fd: Int32 { connection.fd }
    private let frame = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
    private var frameLength = 0
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
    private var filled = 0
    private var stream: UInt32 = 1

    init(port: UInt16) {
        connection = BlockingClient(port: port)
        // :method GET, :scheme http (static table); :path, :authority and authorization as
        // literals without indexing.
        var block: [UInt8] = [0x82, 0x86, 0x04, 0x06] + Array("/bench".utf8) + [0x01, 0x09] + Array("127.0.0.1".utf8)
        block += [0x0F, 0x08, 0x12] + Array("Bearer bench-token".utf8)
        let head: [UInt8] = [0, 0, UInt8(block.count), 0x01, 0x05, 0, 0, 0, 0] + block  // HEADERS, END_STREAM | END_HEADERS
        frameLength = head.count
        head.withUnsafeBytes { frame.copyMemory(from: $0.baseAddress!, byteCount: head.count) }
    }

    /// The preface, SETTINGS with the largest stream window and a connection window as large,
    /// so that no WINDOW_UPDATE is ever needed; then the proxy's SETTINGS are acknowledged.
    func warmUp() {
        var hello = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        hello += [0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0x00, 0x04, 0x7F, 0xFF, 0xFF, 0xFF]  // INITIAL_WINDOW_SIZE 2^31-1
        hello += [0, 0, 4, 0x08, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0x00, 0x00]  // connection WINDOW_UPDATE
        hello += [0, 0, 0, 0x04, 0x01, 0, 0, 0, 0]  // SETTINGS ACK
        _ = hello.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        for _ in 0..<1000 { roundTrip() }
    }

    @inline(__always)
    func roundTrip() {
        frame.storeBytes(of: stream.bigEndian, toByteOffset: 5, as: UInt32.self)
        _ = send(fd, frame, frameLength, Int32(MSG_NOSIGNAL))
        while !streamEnded() {
            let count = read(fd, buffer + filled, 65536 - filled)
            precondition(count > 0, "the proxy closed the HTTP/2 connection")
            filled += count
        }
        stream += 2
    }

    /// Consumes whole frames; true once one ended the current stream.
    private func streamEnded() -> Bool {
        var offset = 0
        var ended = false
        while offset + 9 <= filled {
            let bytes = buffer.assumingMemoryBound(to: UInt8.self) + offset
            let length = Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
            guard offset + 9 + length <= filled else { break }
            let id = UInt32(bytes[5] & 0x7F) << 24 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 8 | UInt32(bytes[8])
            if (bytes[3] == 0x0 || bytes[3] == 0x1) && bytes[4] & 0x1 != 0 && id == stream { ended = true }
            offset += 9 + length
        }
        memmove(buffer, buffer + offset, filled - offset)
        filled -= offset
        return ended
    }
}
