import Glibc
import SwitchyardIO

/// A transport that plays a script, for driving connection code without sockets: reads hand
/// out the queued chunks, then `wouldBlock` (or end of file once `endOfInput` is set); writes
/// take at most `window` bytes per call and `room` bytes in all before the peer is "full"
/// (`wouldBlock`) until the test makes room again.
public final class FakeTransport: Transport {
    /// Chunks the peer sent, one per read (a read into a smaller buffer splits one).
    public var incoming: [[UInt8]] = []
    /// The peer closed its side: reads return 0 once `incoming` is empty.
    public var endOfInput = false
    /// Bytes the peer takes before writes would block.
    public var room: Int
    /// Most bytes one write call takes.
    public var window: Int
    /// The peer reset the connection: writes fail.
    public var resetByPeer = false
    /// Everything written, in order.
    public private(set) var written: [UInt8] = []
    public private(set) var writeCalls = 0
    public private(set) var isWriteShutDown = false
    public private(set) var isClosed = false

    public init(window: Int = .max, room: Int = .max) {
        self.window = window
        self.room = room
    }

    public var writtenText: String { String(decoding: written, as: UTF8.self) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        guard !incoming.isEmpty else { return endOfInput ? .processed(0) : .wouldBlock }
        let count = min(buffer.count, incoming[0].count)
        incoming[0].withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        incoming[0].removeFirst(count)
        if incoming[0].isEmpty { incoming.removeFirst() }
        return .processed(count)
    }

    public func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        if resetByPeer { throw SystemError("send", errno: ECONNRESET) }
        writeCalls += 1
        let count = min(first.count + second.count, window, room)
        if count == 0 { return .wouldBlock }
        let fromFirst = min(count, first.count)
        written += first[0..<fromFirst]
        written += second[0..<(count - fromFirst)]
        room -= count
        return .processed(count)
    }

    public func shutdownWrite() {
        isWriteShutDown = true
    }

    public func close() {
        isClosed = true
    }
}
