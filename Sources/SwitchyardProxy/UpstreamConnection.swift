import SwitchyardHTTP
import SwitchyardIO

/// A connection to a backend, idle in its pool or serving one request. Its decisions are
/// `machine`'s; this class holds the socket, the bytes, and the links.
final class UpstreamConnection {
    /// The backend's socket, as bytes in and out (through TLS for an `https` endpoint).
    let transport: PeerTransport
    var fd: Int32 { transport.fd }
    var token: UInt64 = 0
    let pool: UpstreamPool
    /// Bytes from the backend.
    let input: ByteBuffer
    var machine: H1ClientMachine
    var state: H1ClientMachine.State { machine.state }
    var readable = false
    /// Stopped reading at `Worker.readBudget` with bytes still waiting; in the worker's list of
    /// connections served again after the next round of events.
    var yielded = false
    var peerHungUp = false
    var closed = false
    var deadline: UInt64 = 0
    /// The exchange the connection serves (nil while idle in its pool).
    var exchange: Exchange?
    /// The response body: decoded in `input`, sent to the client (re-encoded if chunked).
    var responseBody = BodyRelay(.none)
    /// The TCP connect is done and the TLS handshake is under way (the machine is still
    /// `connecting`: no request byte goes out before the handshake ends).
    var handshaking = false

    init(transport: PeerTransport, pool: UpstreamPool, connected: Bool, buffers: BufferPools, limits: HeadLimits) {
        self.transport = transport
        self.pool = pool
        self.machine = H1ClientMachine(connected: connected, limits: limits)
        self.input = ByteBuffer(pool: buffers.response)
    }
}
