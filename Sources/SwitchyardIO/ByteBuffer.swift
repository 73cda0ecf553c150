import Glibc

/// A growable byte buffer with a read and a write cursor, owned by one connection.
///
/// Written by hand rather than using `[UInt8]` because the hot path needs raw pointers for
/// `read`/`send` without copy-on-write checks, and buffers are reused for the life of a
/// connection so a steady keep-alive exchange allocates nothing.
public final class ByteBuffer {
    public private(set) var storage: UnsafeMutableRawPointer
    public private(set) var capacity: Int
    public private(set) var readerIndex = 0
    public private(set) var writerIndex = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    public var readableCount: Int { writerIndex - readerIndex }
    public var isEmpty: Bool { readerIndex == writerIndex }
    public var writableCount: Int { capacity - writerIndex }

    public var readableBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + readerIndex, count: readableCount)
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

    /// Makes room for at least `count` more bytes: first by moving unread bytes to the
    /// front, then by doubling the storage.
    public func reserveWritable(_ count: Int) {
        if writableCount >= count { return }
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
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
    }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        reserveWritable(bytes.count)
        (storage + writerIndex).copyMemory(from: base, byteCount: bytes.count)
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

    public func append(byte: UInt8) {
        reserveWritable(1)
        storage.storeBytes(of: byte, toByteOffset: writerIndex, as: UInt8.self)
        writerIndex += 1
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

    /// Appends `value` in lowercase hexadecimal (chunk sizes).
    public func append(hex value: Int) {
        precondition(value >= 0)
        var digits: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &digits) { scratch in
            var n = value
            var index = scratch.count
            repeat {
                index -= 1
                let digit = n & 0xF
                scratch[index] = UInt8(truncatingIfNeeded: digit < 10 ? 48 + digit : 87 + digit)
                n >>= 4
            } while n > 0
            append(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }

    /// Reads once from `fd` into the free space (make room first with `reserveWritable`).
    public func read(from fd: Int32) throws(SystemError) -> IOResult {
        precondition(writableCount > 0)
        let result = try Syscall.read(fd, storage + writerIndex, writableCount)
        if case .processed(let count) = result { writerIndex += count }
        return result
    }

    /// Writes as much as the socket takes; returns true when the buffer is empty afterwards.
    public func flush(to fd: Int32) throws(SystemError) -> Bool {
        while readableCount > 0 {
            switch try Syscall.write(fd, storage + readerIndex, readableCount) {
            case .processed(let count): consume(count)
            case .wouldBlock: return false
            }
        }
        return true
    }

    /// Shrinks back to `capacity` bytes when an unusually large message grew the buffer and
    /// it is now empty, so one big request does not pin memory for the connection's life.
    public func shrinkIfEmpty(to baseline: Int) {
        guard isEmpty, capacity > baseline * 4 else { return }
        storage.deallocate()
        storage = .allocate(byteCount: baseline, alignment: 16)
        capacity = baseline
    }
}
