import SwitchyardHTTP2
import SwitchyardIO

/// One HTTP/2 connection (h2c) to a gRPC backend, carrying many calls at once, one exchange
/// per stream: the mirror of `H2Connection`. The session's decisions are nghttp2's; this class
/// holds the socket, the bytes and the links, and hands the session's events to the worker.
///
///     client stream ──request DATA──▶ session.submitRequest / h2RequestData ──send──▶ socket
///     client stream ◀──h2Response / h2ResponseData / h2ResponseEnd ◀──receive── socket
final class H2UpstreamConnection: H2ClientSessionDelegate {
    let transport: PeerTransport
    var fd: Int32 { transport.fd }
    var token: UInt64 = 0
    let session: H2ClientSession
    let pool: UpstreamPool
    /// Safe unowned: a worker outlives every connection it serves (no retain per callback).
    unowned(unsafe) let worker: Worker
    let input: ByteBuffer
    /// Bytes from the session the socket did not take yet.
    let output: ByteBuffer
    /// The calls in flight, by stream id.
    var calls: [Int32: Exchange] = [:]
    /// The TCP connect is under way: the session's bytes wait.
    var connecting: Bool
    var readable = false
    /// Stopped reading at `Worker.readBudget` with bytes still waiting; in the worker's list of
    /// connections served again after the next round of events.
    var yielded = false
    var peerHungUp = false
    var closed = false
    /// No new calls go here (the backend sent GOAWAY, or a call could not be submitted).
    var retiring = false
    /// Connect timeout while connecting; idle timeout while no call is in flight (ms, monotonic).
    var deadline: UInt64 = 0
    /// Waits in the worker's list to be served after the current batch of events.
    var scheduled = false

    init(transport: PeerTransport, session: H2ClientSession, pool: UpstreamPool, worker: Worker, connecting: Bool, buffers: BufferPools) {
        self.transport = transport
        self.session = session
        self.pool = pool
        self.worker = worker
        self.connecting = connecting
        self.input = ByteBuffer(pool: buffers.response)
        self.output = ByteBuffer(pool: buffers.output)
        session.delegate = self
    }

    func h2Response(stream: Int32, status: Int, fields: H2FieldsView, endStream: Bool) {
        worker.callResponse(self, stream: stream, status: status, fields: fields, endStream: endStream)
    }

    func h2ResponseData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        worker.callResponseData(self, stream: stream, bytes: bytes)
    }

    func h2ResponseEnd(stream: Int32, trailers: H2FieldsView?) {
        worker.callResponseEnd(self, stream: stream, trailers: trailers)
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        worker.callClosed(self, stream: stream, errorCode: errorCode)
    }

    func h2RequestData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        worker.callRequestData(self, stream: stream, into: buffer)
    }
}
