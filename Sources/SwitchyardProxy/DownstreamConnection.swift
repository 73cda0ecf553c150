import SwitchyardHTTP
import SwitchyardIO

/// A client connection and the exchange currently on it. Its decisions are `machine`'s (see
/// `H1ServerMachine` for its states); this class holds the socket, the bytes, and the links.
///
/// Everything about one request lives in its `Exchange`, so an idle connection holds only its
/// socket, its machine and two empty buffers.
final class DownstreamConnection {
    /// The client's socket (or TLS on it), as bytes in and out.
    let transport: PeerTransport
    var fd: Int32 { transport.fd }
    var token: UInt64 = 0
    /// Bytes from the client: request heads, bodies, pipelined requests.
    let input: ByteBuffer
    /// Proxy-made bytes for the client (response heads, errors), sent before relayed body bytes.
    let output: ByteBuffer
    /// The client's address as text, for `X-Forwarded-For`.
    let clientAddress: [UInt8]
    /// When the connection was accepted (monotonic ns).
    let acceptedAt: UInt64

    var machine: H1ServerMachine
    /// Edge-triggered epoll: bytes may be waiting in the socket that were not read yet.
    var readable = false
    /// The last readiness event said the peer closed or failed.
    var peerHungUp = false
    /// Stopped reading at `Worker.readBudget` with bytes still waiting; in the worker's list of
    /// connections served again after the next round of events.
    var yielded = false
    var closed = false
    var deadline: UInt64 { machine.deadline }
    /// Bytes written to the client over the connection's life.
    var bytesSent = 0
    /// The request being read or served: from the first byte of its head to its finish.
    var exchange: Exchange?
    /// The first bytes may still turn out to be the HTTP/2 connection preface (h2c with prior
    /// knowledge, or h2 chosen by ALPN); false from the first HTTP/1.1 request on.
    var mayBeHTTP2 = false

    init(transport: PeerTransport, clientAddress: [UInt8], buffers: BufferPools, machine: H1ServerMachine, acceptedAt: UInt64) {
        self.transport = transport
        self.clientAddress = clientAddress
        self.input = ByteBuffer(pool: buffers.input)
        self.output = ByteBuffer(pool: buffers.output)
        self.machine = machine
        self.acceptedAt = acceptedAt
    }
}

/// A worker's buffer blocks: bytes read from clients, bytes read from backends, and
/// proxy-made bytes (heads, errors). Backend blocks are larger so that a typical response
/// (head and a 16–32 KiB body) arrives in one read and leaves in one write; a block is held
/// only while it holds bytes.
///
/// The pools keep enough free blocks for the requests in flight of a busy worker; blocks freed
/// in a burst beyond that go back to malloc, so a burst does not pin memory.
struct BufferPools {
    let input = BufferPool(blockSize: 16384, maxFree: 128)
    let response = BufferPool(blockSize: 65536, maxFree: 32)
    let output = BufferPool(blockSize: 4096, maxFree: 256)
}
