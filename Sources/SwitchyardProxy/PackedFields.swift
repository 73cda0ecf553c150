import SwitchyardIO

/// Header fields held between the side that received them and the side that sends them on
/// (a backend's response head or trailers waiting for an HTTP/2 client's stream): each field
/// is its name's and its value's lengths, four bytes each, then their bytes. No text form in
/// between, so no field is parsed twice.
enum PackedFields {
    private static let lengthSize = MemoryLayout<UInt32>.size

    static func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        appendLength(name.count, to: buffer)
        appendLength(value.count, to: buffer)
        buffer.append(name)
        buffer.append(value)
    }

    static func append(name: StaticString, value: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        append(name: UnsafeRawBufferPointer(staticString: name), value: value, to: buffer)
    }

    /// A field whose value `writeValue` appends to the buffer, in as many pieces as it likes.
    static func append(name: StaticString, to buffer: ByteBuffer, writeValue: (ByteBuffer) -> Void) {
        let name = UnsafeRawBufferPointer(staticString: name)
        appendLength(name.count, to: buffer)
        let valueLengthAt = buffer.readableCount
        appendLength(0, to: buffer)
        buffer.append(name)
        let valueStart = buffer.readableCount
        writeValue(buffer)
        let length = UInt32(truncatingIfNeeded: buffer.readableCount - valueStart).littleEndian
        withUnsafeBytes(of: length) { buffer.mutableReadableBytes(from: valueLengthAt).copyMemory(from: $0) }
    }

    /// Each field of `packed`, in order; a truncated last field (which `append` never writes)
    /// ends the walk.
    static func forEach(_ packed: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        var offset = 0
        while packed.count - offset >= 2 * lengthSize {
            let nameCount = Int(UInt32(littleEndian: packed.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let valueCount = Int(UInt32(littleEndian: packed.loadUnaligned(fromByteOffset: offset + lengthSize, as: UInt32.self)))
            let nameStart = offset + 2 * lengthSize
            guard packed.count - nameStart >= nameCount + valueCount else { return }
            let valueStart = nameStart + nameCount
            offset = valueStart + valueCount
            body(UnsafeRawBufferPointer(rebasing: packed[nameStart..<valueStart]), UnsafeRawBufferPointer(rebasing: packed[valueStart..<offset]))
        }
    }

    private static func appendLength(_ count: Int, to buffer: ByteBuffer) {
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: count).littleEndian) { buffer.append($0) }
    }
}
