import Glibc
import SwitchyardHTTP
import SwitchyardIO

/// A blocking `GET` to the admin API, for the CLI (never used by the proxy itself).
enum AdminClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The body of a 200 answer to `GET path`; anything else is an error that says what happened.
    static func get(_ path: String, from address: SocketAddress, timeoutMs: Int32 = 5000) throws -> [UInt8] {
        let fd: Int32
        do {
            let (socket, progress) = try Socket.connect(to: address)
            fd = socket
            if progress == .inProgress {
                var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = Glibc.poll(&poll, 1, timeoutMs)
                let error = Socket.pendingError(fd)
                guard ready == 1, error == 0 else {
                    Syscall.close(fd)
                    throw SystemError("connect", errno: ready == 1 ? error : ETIMEDOUT)
                }
            }
        } catch let error as SystemError {
            throw Failure(description: "cannot reach the admin API at \(address) (\(error)); is Switchyard running? Give its admin address with --admin host:port")
        }
        defer { Syscall.close(fd) }
        Socket.setBlocking(fd)
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let sent: Result<Void, SystemError> = request.withUnsafeBytes { bytes in Result { () throws(SystemError) in try FileIO.writeAll(fd, bytes) } }
        if case .failure(let error) = sent { throw Failure(description: "cannot send to the admin API at \(address) (\(error))") }
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while Glibc.poll(&poll, 1, timeoutMs) == 1 {
            let read: Result<IOResult, SystemError> = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemError) in try Syscall.read(fd, bytes.baseAddress!, bytes.count) }
            }
            guard case .success(.processed(let count)) = read, count > 0 else { break }
            response += chunk[0..<count]
            if response.count > 64 << 20 { break }
        }
        var parser = HeadParser(limits: HeadLimits(maxHeadBytes: 65536, maxHeaders: 100, maxURIBytes: 8192))
        var head = ResponseHead()
        guard case .complete(let length) = response.withUnsafeBytes({ parser.parseResponse($0, requestWasHead: false, into: &head) }) else {
            throw Failure(description: "the admin API at \(address) sent no valid HTTP answer")
        }
        let body = Array(response[length...])
        guard head.status == 200 else {
            throw Failure(description: "GET \(path) at \(address) answered \(head.status): \(String(decoding: body, as: UTF8.self))")
        }
        return body
    }
}
