/// A block of access-log lines. A worker fills one; the writer thread writes it out and puts
/// it back on the free list. Allocated once; at any time exactly one thread owns it (handed
/// over through the writer's mailbox and free list, both behind a mutex), hence
/// `@unchecked Sendable`.
final class AccessLogBuffer: @unchecked Sendable {
    static let capacity = 256 << 10
    let storage = UnsafeMutableRawPointer.allocate(byteCount: AccessLogBuffer.capacity, alignment: 16)
    var count = 0
    /// Lines in this block.
    var lines = 0

    var room: Int { Self.capacity - count }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    deinit { storage.deallocate() }
}

/// Appending JSON pieces to a block; callers make sure a whole line fits first.
extension AccessLogBuffer {
    @inline(__always)
    func append(byte: UInt8) {
        storage.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    func append(_ text: StaticString) {
        storage.advanced(by: count).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        count += text.utf8CodeUnitCount
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        storage.advanced(by: count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    func appendDecimal(_ value: UInt64) {
        var length = 1
        var rest = value / 10
        while rest > 0 {
            length += 1
            rest /= 10
        }
        let end = storage + count
        var value = value
        for index in stride(from: length - 1, through: 0, by: -1) {
            end.storeBytes(of: UInt8(48 + value % 10), toByteOffset: index, as: UInt8.self)
            value /= 10
        }
        count += length
    }

    func appendHex(_ value: UInt64) {
        let end = storage + count
        for index in 0..<16 {
            let nibble = UInt8(truncatingIfNeeded: value >> UInt64(60 - 4 * index)) & 0xF
            end.storeBytes(of: nibble < 10 ? 48 + nibble : 87 + nibble, toByteOffset: index, as: UInt8.self)
        }
        count += 16
    }

    /// `end - start` nanoseconds as milliseconds with three decimals; null when either is unknown.
    func appendMillis(from start: UInt64, to end: UInt64) {
        guard start != 0, end != 0, end >= start else { return append("null") }
        let micros = (end - start) / 1000
        appendDecimal(micros / 1000)
        append(byte: UInt8(ascii: "."))
        let fraction = micros % 1000
        append(byte: UInt8(48 + fraction / 100))
        append(byte: UInt8(48 + fraction / 10 % 10))
        append(byte: UInt8(48 + fraction % 10))
    }

    func appendQuotedOrNull(_ bytes: UnsafeRawBufferPointer) {
        if bytes.isEmpty { append("null") } else { appendQuoted(bytes) }
    }

    /// A JSON string: quote, backslash and control characters escaped, UTF-8 copied as it is,
    /// and each byte that is not part of valid UTF-8 written as U+FFFD (`\ufffd`, as Go's and
    /// Python's JSON encoders do), so that a line is valid JSON whatever a client sent.
    func appendQuoted(_ bytes: UnsafeRawBufferPointer) {
        append(byte: UInt8(ascii: "\""))
        // Nearly every value needs no escape: copied in one go.
        if !bytes.contains(where: { $0 < 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            append(bytes)
            append(byte: UInt8(ascii: "\""))
            return
        }
        let digits: StaticString = "0123456789abcdef"
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                append(byte: UInt8(ascii: "\\"))
                append(byte: byte)
            case 0x20..<0x7F:
                append(byte: byte)
            case 0..<0x20, 0x7F:
                append("\\u00")
                append(byte: digits.utf8Start[Int(byte >> 4)])
                append(byte: digits.utf8Start[Int(byte & 0xF)])
            default:
                let length = Self.utf8SequenceLength(bytes, at: index)
                if length == 0 {
                    append("\\ufffd")
                } else {
                    append(UnsafeRawBufferPointer(rebasing: bytes[index..<index + length]))
                    index += length
                    continue
                }
            }
            index += 1
        }
        append(byte: UInt8(ascii: "\""))
    }

    /// The length of the well-formed UTF-8 sequence starting at `index` (RFC 3629 §4: no
    /// overlong forms, no surrogates, nothing past U+10FFFF), or 0.
    static func utf8SequenceLength(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        let lead = bytes[index]
        let (length, secondRange): (Int, ClosedRange<UInt8>) = switch lead {
        case 0xC2...0xDF: (2, 0x80...0xBF)
        case 0xE0: (3, 0xA0...0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80...0xBF)
        case 0xED: (3, 0x80...0x9F)
        case 0xF0: (4, 0x90...0xBF)
        case 0xF1...0xF3: (4, 0x80...0xBF)
        case 0xF4: (4, 0x80...0x8F)
        default: (0, 0x80...0xBF)
        }
        guard length > 0, index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else { return 0 }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) { return 0 }
        return length
    }
}
