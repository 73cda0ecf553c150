import COpenSSL
import Glibc
import SwitchyardIO

/// RFC 6455 server side for the demo backend: handshake, then every data frame echoed back.
struct WebSocketEcho {
    let fd: Int32
    let input: ByteBuffer

    func run(request: DemoRequest) {
        guard let key = request.header("sec-websocket-key") else { return }
        let accept = Self.acceptValue(for: key)
        let handshake = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: \(accept)\r\n\r\n"
        guard Array(handshake.utf8).withUnsafeBytes({ DemoConnection.sendAll(fd, $0) }) else { return }
        while let (opcode, payload) = readFrame() {
            switch opcode {
            case 0x8:  // close: answer and stop
                _ = sendFrame(opcode: 0x8, payload: payload)
                return
            case 0x9:  // ping
                guard sendFrame(opcode: 0xA, payload: payload) else { return }
            case 0xA:
                continue
            default:
                guard sendFrame(opcode: opcode, payload: payload) else { return }
            }
        }
    }

    /// base64(SHA-1(key + GUID)), with OpenSSL doing the hashing and encoding.
    static func acceptValue(for key: String) -> String {
        let source = Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        _ = SHA1(source, source.count, &digest)
        var encoded = [UInt8](repeating: 0, count: 32)
        let length = EVP_EncodeBlock(&encoded, digest, 20)
        return String(decoding: encoded[0..<Int(length)], as: UTF8.self)
    }

    private func need(_ count: Int) -> Bool {
        while input.readableCount < count {
            input.reserveWritable(8192)
            guard case .processed(let read)? = try? input.read(from: fd), read > 0 else { return false }
        }
        return true
    }

    /// One frame, unmasked. Fragmented messages are echoed frame by frame.
    private func readFrame() -> (opcode: UInt8, payload: [UInt8])? {
        guard need(2) else { return nil }
        let first = input.readableBytes[0], second = input.readableBytes[1]
        var length = Int(second & 0x7F)
        var offset = 2
        if length == 126 {
            guard need(4) else { return nil }
            length = Int(input.readableBytes[2]) << 8 | Int(input.readableBytes[3])
            offset = 4
        } else if length == 127 {
            guard need(10) else { return nil }
            length = (2..<10).reduce(0) { $0 << 8 | Int(input.readableBytes[$1]) }
            offset = 10
        }
        guard length <= 16 << 20 else { return nil }
        let masked = second & 0x80 != 0
        let maskOffset = offset
        if masked { offset += 4 }
        guard need(offset + length) else { return nil }
        let bytes = input.readableBytes
        var payload = Array(bytes[offset..<offset + length])
        if masked {
            for index in payload.indices { payload[index] ^= bytes[maskOffset + index % 4] }
        }
        input.consume(offset + length)
        return (first & 0x0F, payload)
    }

    private func sendFrame(opcode: UInt8, payload: [UInt8]) -> Bool {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(UInt8(payload.count))
        } else if payload.count < 65536 {
            frame += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(127)
            frame += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        frame += payload
        return frame.withUnsafeBytes { DemoConnection.sendAll(fd, $0) }
    }
}
