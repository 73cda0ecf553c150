/// Hands `input` to an HTTP/2 session `step` bytes at a time, as reads from a socket would,
/// draining its output after each chunk, until the input ends or a fatal protocol error ends
/// the connection. The output must stay bounded whatever the input. Between two chunks the
/// session rests as on a quiet tick (its idle pages given back), as it may between two reads.
func feed(_ session: H2Session, _ input: UnsafeRawBufferPointer, step: Int) {
    var sent = 0
    var offset = 0
    while offset < input.count {
        let end = min(offset + step, input.count)
        let failed: Bool
        do {
            try session.receive(UnsafeRawBufferPointer(rebasing: input[offset..<end]))
            failed = false
        } catch {
            failed = true
        }
        // Output is drained even after a fatal error: the GOAWAY goes out before the close.
        while let out = try? session.send() {
            sent += out.count
            precondition(sent < 64 << 20, "output must stay bounded")
        }
        if failed { return }
        session.restIfQuiet()  // notes the traffic
        session.restIfQuiet()  // rests, when nothing waits to be sent
        offset = end
    }
}

/// nghttp2's memory as the worker gives it: one allocator for every session, so that blocks
/// (and pages given back) of one input are reused by the next.
nonisolated(unsafe) let fuzzAllocator = H2Allocator()
