import Glibc

/// A growable byte buffer with a read and a write cursor, owned by one connection.
///
/// Written by hand rather than using `[UInt8]` because the hot path needs raw pointers for
/// `read`/`send` without copy-on-write checks, and memory that is reused rather than
/// reallocated, so a steady keep-alive exchange allocates nothing.
///
/// A buffer made with a `BufferPool` holds memory only while it holds bytes: an empty buffer
/// gives its block back (`releaseIfEmpty`) and takes one again when it is written to. So an
/// idle keep-alive connection costs no buffer memory, and the pool's blocks are reused, so a
/// busy connection does not call malloc either.
public final class ByteBuffer {
    private var storage: UnsafeMutableRawPointer?
    public private(set) var capacity: Int
    public private(set) var readerIndex = 0
    public private(set) var writerIndex = 0
    private let pool: BufferPool?

    /// A buffer with its own storage of `capacity` bytes.
    public init(capacity: Int) {
        precondition(capacity > 0)
        self.pool = nil
        self.capacity = capacity
        self.storage = .allocate(byteCount: capacity, alignment: 16)
    }

    /// A buffer that borrows blocks from `pool` while it holds bytes.
    public init(pool: BufferPool) {
        self.pool = pool
        self.capacity = 0
    }

    deinit { giveBack() }

    /// Returns the storage of an empty buffer to its pool.
    @inline(__always)
    public func releaseIfEmpty() {
        if pool != nil, storage != nil, readerIndex == writerIndex { giveBack() }
    }

    private func giveBack() {
        guard let storage else { return }
        if let pool, capacity == pool.blockSize {
            pool.release(storage)
        } else {
            storage.deallocate()
        }
        self.storage = nil
        capacity = 0
        readerIndex = 0
        writerIndex = 0
    }

    public var readableCount: Int { writerIndex - readerIndex }
    public var isEmpty: Bool { readerIndex == writerIndex }
    public var writableCount: Int { capacity - writerIndex }

    public var readableBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { $0 + readerIndex }, count: readableCount)
    }

    /// The readable bytes from `offset` on, writable in place; valid until the buffer is next
    /// changed. (Not a generic closure: this is called per body read, across modules, where a
    /// generic call costs more than the decoding it wraps.)
    public func mutableReadableBytes(from offset: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset <= readableCount)
        return UnsafeMutableRawBufferPointer(start: storage.map { $0 + readerIndex + offset }, count: readableCount - offset)
    }

    /// Removes `count` readable bytes starting `offset` bytes after the reader index; the bytes
    /// after them move down.
    public func removeReadable(at offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= readableCount)
        guard count > 0 else { return }
        if offset == 0 { return consume(count) }
        // Safe because `count > 0` readable bytes mean the storage is allocated.
        let start = storage.unsafelyUnwrapped + readerIndex + offset
        let after = readableCount - offset - count
        if after > 0 { start.copyMemory(from: start + count, byteCount: after) }
        writerIndex -= count
    }

    /// Drops readable bytes beyond the first `count`.
    public func truncateReadable(to count: Int) {
        precondition(count >= 0 && count <= readableCount)
        writerIndex = readerIndex + count
        if readerIndex == writerIndex { clear() }
    }

    public func clear() {
        readerIndex = 0
        writerIndex = 0
    }

    public func consume(_ count: Int) {
        precondition(count <= readableCount)
        readerIndex += count
        if readerIndex == writerIndex { clear() }
    }

    /// Copies up to `limit` readable bytes (as many as fit) into `buffer` and consumes them;
    /// returns how many.
    public func move(into buffer: UnsafeMutableRawBufferPointer, limit: Int = .max) -> Int {
        let count = min(buffer.count, readableCount, limit)
        guard count > 0 else { return 0 }
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: readableBytes[0..<count]))
        consume(count)
        return count
    }

    /// Makes room for at least `count` more bytes: first by moving unread bytes to the
    /// front, then by doubling the storage.
    public func reserveWritable(_ count: Int) {
        if writableCount >= count { return }
        guard let storage else {
            if let pool, count <= pool.blockSize {
                self.storage = pool.take()
                capacity = pool.blockSize
            } else {
                var newCapacity = pool?.blockSize ?? 4096
                while newCapacity < count { newCapacity *= 2 }
                self.storage = .allocate(byteCount: newCapacity, alignment: 16)
                capacity = newCapacity
            }
            return
        }
        if readerIndex > 0 {
            let unread = readableCount
            if unread > 0 { (storage).copyMemory(from: storage + readerIndex, byteCount: unread) }
            readerIndex = 0
            writerIndex = unread
            if writableCount >= count { return }
        }
        var newCapacity = capacity * 2
        while newCapacity - writerIndex < count { newCapacity *= 2 }
        let newStorage = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newStorage.copyMemory(from: storage, byteCount: writerIndex)
        if let pool, capacity == pool.blockSize { pool.release(storage) } else { storage.deallocate() }
        self.storage = newStorage
        capacity = newCapacity
    }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        reserveWritable(bytes.count)
        // Safe because `reserveWritable` of a positive count allocates the storage.
        (storage.unsafelyUnwrapped + writerIndex).copyMemory(from: base, byteCount: bytes.count)
        writerIndex += bytes.count
    }

    public func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    public func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    public func append(_ string: String) {
        var string = string
        string.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `value` in decimal without going through `String`.
    public func append(decimal value: Int) {
        precondition(value >= 0)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch
        withUnsafeMutableBytes(of: &digits) { scratch in
            var n = value
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(truncatingIfNeeded: 48 + n % 10)
                n /= 10
            } while n > 0
            append(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }

    /// Appends `value` as exactly 16 lowercase hex digits.
    public func append(hex16 value: UInt64) {
        reserveWritable(16)
        let digits: StaticString = "0123456789abcdef"
        // Safe because `reserveWritable(16)` allocates the storage.
        let target = storage.unsafelyUnwrapped + writerIndex
        for index in 0..<16 {
            target.storeBytes(of: digits.utf8Start[Int(value >> UInt64(60 - 4 * index) & 0xF)], toByteOffset: index, as: UInt8.self)
        }
        writerIndex += 16
    }

    /// Reads once from `fd` into the free space (make room first with `reserveWritable`).
    public func read(from fd: Int32) throws(SystemError) -> IOResult {
        precondition(writableCount > 0)
        // Safe because `writableCount > 0` means the storage is allocated.
        let result = try Syscall.read(fd, storage.unsafelyUnwrapped + writerIndex, writableCount)
        if case .processed(let count) = result { writerIndex += count }
        return result
    }

    /// The free space after the readable bytes, for a `Transport` to read into; report what was
    /// written into it with `didWrite`. Valid until the buffer is next changed.
    public var writableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage.map { $0 + writerIndex }, count: writableCount)
    }

    public func didWrite(_ count: Int) {
        precondition(count <= writableCount)
        writerIndex += count
    }

    /// Writes as much as the socket takes; returns true when the buffer is empty afterwards.
    public func flush(to fd: Int32) throws(SystemError) -> Bool {
        while readableCount > 0 {
            // Safe because readable bytes mean the storage is allocated.
            switch try Syscall.write(fd, storage.unsafelyUnwrapped + readerIndex, readableCount) {
            case .processed(let count): consume(count)
            case .wouldBlock: return false
            }
        }
        return true
    }
}

/// Fixed-size blocks for the buffers of one event loop. Blocks come back to the pool and are
/// handed out again, so in a steady state no buffer is allocated. Not thread-safe: one per loop.
public final class BufferPool {
    public let blockSize: Int
    private var free: [UnsafeMutableRawPointer] = []
    /// Blocks kept beyond this many are freed: a burst of connections does not pin memory.
    private let maxFree: Int

    public init(blockSize: Int, maxFree: Int = 1024) {
        self.blockSize = blockSize
        self.maxFree = maxFree
        free.reserveCapacity(maxFree)
    }

    deinit {
        for block in free { block.deallocate() }
    }

    @inline(__always)
    func take() -> UnsafeMutableRawPointer {
        free.popLast() ?? .allocate(byteCount: blockSize, alignment: 16)
    }

    @inline(__always)
    func release(_ block: UnsafeMutableRawPointer) {
        if free.count < maxFree { free.append(block) } else { block.deallocate() }
    }
}
