import SwitchyardHTTP2
import SwitchyardIO

/// A client connection speaking HTTP/2: one `H2ServerSession` (the protocol, in nghttp2) and
/// the streams open on it, each carrying one `Exchange`. The session's decisions are nghttp2's;
/// this class holds the socket, the bytes, and the links, and hands the session's events to
/// the worker.
///
///     socket ──read──▶ session.receive ──▶ h2Request / h2RequestData / h2RequestEnd ──▶ Exchange
///     socket ◀─write── session.send ◀── h2ResponseData ◀── the backend's response (per stream)
final class H2Connection: H2ServerSessionDelegate {
    /// The client's socket (or TLS on it).
    let transport: PeerTransport
    var fd: Int32 { transport.fd }
    var token: UInt64 = 0
    let session: H2ServerSession
    /// Safe unowned: a worker outlives every connection it serves (no retain per callback).
    unowned(unsafe) let worker: Worker
    /// Bytes read from the client, until the session took them.
    let input: ByteBuffer
    /// Bytes from the session the socket did not take yet; the session is asked for more only
    /// once they are out.
    let output: ByteBuffer
    let clientAddress: [UInt8]
    let acceptedAt: UInt64
    var streams: [Int32: H2Stream] = [:]
    var readable = false
    /// Stopped reading at `Worker.readBudget` with bytes still waiting; in the worker's list of
    /// connections served again after the next round of events.
    var yielded = false
    var peerHungUp = false
    var closed = false
    /// Closes the connection when reached (ms, monotonic; 0 = none): idle, no stream with an
    /// exchange in progress.
    var deadline: UInt64 = 0
    /// Streams whose exchange is in progress (answered streams may stay open until the client
    /// ends its side; they do not keep the connection from idling).
    var exchanges = 0
    /// GOAWAY went out: no new streams; the connection closes when the last one is done.
    var goingAway = false
    /// Waits in the worker's list to be served after the current batch of events.
    var scheduled = false
    /// Backend connections whose reading paused for lack of room and may go on now that a
    /// stream passed bytes on to the session.
    var paused: [UpstreamConnection] = []
    /// Streams whose response head waits, submitted to the session just before it next
    /// writes, in the order they came; each head's fields are the range `start..<end` of
    /// `pendingHeadFields` (`PackedFields`). One buffer per connection, not one per stream:
    /// with many streams answered in one round, a buffer each would outrun the pool.
    var pendingHeads: [(stream: H2Stream, start: Int, end: Int)] = []
    let pendingHeadFields: ByteBuffer

    init(transport: PeerTransport, session: H2ServerSession, worker: Worker, clientAddress: [UInt8], acceptedAt: UInt64, buffers: BufferPools) {
        self.transport = transport
        self.session = session
        self.worker = worker
        self.clientAddress = clientAddress
        self.acceptedAt = acceptedAt
        self.input = ByteBuffer(pool: buffers.input)
        self.output = ByteBuffer(pool: buffers.output)
        self.pendingHeadFields = ByteBuffer(pool: buffers.output)
        session.delegate = self
    }

    func h2Request(stream: Int32, head: H2RequestView, endStream: Bool) {
        worker.h2Request(self, stream: stream, head: head, endStream: endStream)
    }

    func h2RequestData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        worker.h2RequestData(self, stream: stream, bytes: bytes)
    }

    func h2RequestEnd(stream: Int32, trailers: [H2Field]) {
        worker.h2RequestEnd(self, stream: stream, trailers: trailers)
    }

    func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        worker.h2StreamClosed(self, stream: stream, errorCode: errorCode)
    }

    func h2ResponseData(stream: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, end: Bool)? {
        worker.h2ResponseData(self, stream: stream, into: buffer)
    }

    func h2ResponseTrailers(stream: Int32) -> Bool {
        worker.h2ResponseTrailers(self, stream: stream)
    }
}

/// One stream of an `H2Connection`: its exchange while it has one, the request body bytes the
/// backend has not taken yet, and a proxy-made answer's body. Pooled per worker
/// (`H2StreamPool`): a steady connection allocates none.
final class H2Stream {
    private(set) var id: Int32 = 0
    /// Safe unowned: a stream is used only while it is in its connection's `streams`.
    private(set) unowned(unsafe) var connection: H2Connection
    /// Until it finishes; the stream may outlive it (a proxy-made answer still being sent).
    var exchange: Exchange?
    /// Request body bytes from DATA frames, then trailer lines for a chunked upload. Bounded
    /// by the stream's flow-control window: it opens only as bytes leave (`consume`).
    let requestInput: ByteBuffer
    /// Request body bytes received and not yet given back to the window.
    var unconsumed = 0
    /// The request has no Content-Length: it goes to the backend chunked.
    var chunkedUpload = false
    /// The client ended its side of the stream (END_STREAM).
    var requestEnded = false
    /// The request is a gRPC call.
    var grpc = false
    /// The body of a proxy-made answer, or a gRPC backend's response bytes not yet sent on.
    let output: ByteBuffer
    /// Response trailer fields waiting for the end of the body (`PackedFields`).
    let trailers: ByteBuffer
    /// The status of the backend's response head while it waits for the connection to write
    /// (its fields are in `H2Connection.pendingHeadFields`, ending at `pendingHeadEnd`): a
    /// failure before then (a malformed body in the same read) still gets a proxy-made 502.
    /// 0 when no head waits.
    var pendingStatus = 0
    var pendingHeadEnd = 0
    /// The response head went to the session: a failure from now on resets the stream.
    var responding = false
    /// The response has no body (HEAD, 204, 304): its head is all of it.
    var bodiless = false
    /// Response body bytes handed to the session.
    var bytesSent = 0

    init(id: Int32, connection: H2Connection, buffers: BufferPools) {
        self.id = id
        self.connection = connection
        self.requestInput = ByteBuffer(pool: buffers.input)
        self.output = ByteBuffer(pool: buffers.output)
        self.trailers = ByteBuffer(pool: buffers.output)
    }

    /// A proxy-made answer takes the place of the backend's head (or the stream is gone): its
    /// entry in the connection's list is skipped.
    func dropPendingHead() {
        pendingStatus = 0
        pendingHeadEnd = 0
    }

    /// Makes a recycled object the stream `id` of `connection`.
    func reuse(id: Int32, connection: H2Connection) {
        self.id = id
        self.connection = connection
    }

    /// Clears the object for its next stream; its buffers give their blocks back.
    func reset() {
        exchange = nil
        requestInput.clear()
        requestInput.releaseIfEmpty()
        output.clear()
        output.releaseIfEmpty()
        trailers.clear()
        trailers.releaseIfEmpty()
        dropPendingHead()
        unconsumed = 0
        chunkedUpload = false
        requestEnded = false
        grpc = false
        responding = false
        bodiless = false
        bytesSent = 0
    }
}

/// Recycled streams of one worker.
struct H2StreamPool {
    private var free: [H2Stream] = []
    private let maxFree = 256
    private let buffers: BufferPools

    init(buffers: BufferPools) {
        self.buffers = buffers
        free.reserveCapacity(maxFree)
    }

    mutating func acquire(id: Int32, connection: H2Connection) -> H2Stream {
        guard let stream = free.popLast() else { return H2Stream(id: id, connection: connection, buffers: buffers) }
        stream.reuse(id: id, connection: connection)
        return stream
    }

    mutating func release(_ stream: H2Stream) {
        stream.reset()
        if free.count < maxFree { free.append(stream) }
    }
}
