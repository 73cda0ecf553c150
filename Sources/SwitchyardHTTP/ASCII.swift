/// Byte-level helpers for ASCII protocol text.
public enum ASCII {
    public static let cr: UInt8 = 13
    public static let lf: UInt8 = 10
    public static let space: UInt8 = 32
    public static let tab: UInt8 = 9
    public static let colon: UInt8 = 58
    public static let quote: UInt8 = 34
    public static let backslash: UInt8 = 92

    @inline(__always)
    public static func lower(_ byte: UInt8) -> UInt8 {
        byte &- 65 < 26 ? byte | 0x20 : byte
    }

    /// Compares `bytes` with a lowercase ASCII literal, ignoring the case of `bytes`.
    @inline(__always)
    public static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        let expected = literal.utf8Start
        for index in 0..<bytes.count where lower(bytes[index]) != expected[index] {
            return false
        }
        return true
    }

    /// Compares `bytes` with an ASCII literal, case-sensitively.
    @inline(__always)
    public static func equalsExact(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        guard let base = bytes.baseAddress else { return true }  // both empty
        return memcmp(base, literal.utf8Start, bytes.count) == 0
    }

    /// Exact byte comparison.
    @inline(__always)
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard let first = a.baseAddress, let second = b.baseAddress else { return true }  // both empty
        return memcmp(first, second, a.count) == 0
    }

    /// RFC 9110 `tchar`, as a 128-bit set: no table to initialise or bounds-check.
    @inline(__always)
    public static func isTokenChar(_ byte: UInt8) -> Bool {
        // ! # $ % & ' * + - . 0-9 A-Z ^ _ ` a-z | ~
        let low: UInt64 = 0x03FF_6CFA_0000_0000
        let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE
        if byte < 64 { return low >> UInt64(byte) & 1 != 0 }
        if byte < 128 { return high >> UInt64(byte - 64) & 1 != 0 }
        return false
    }

    /// Splits a comma-separated header value into trimmed, non-empty elements.
    public static func forEachListElement(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        var index = 0
        while index <= value.count {
            if index == value.count || value[index] == UInt8(ascii: ",") {
                var lower = start
                var upper = index
                while lower < upper, value[lower] == space || value[lower] == tab { lower += 1 }
                while upper > lower, value[upper - 1] == space || value[upper - 1] == tab { upper -= 1 }
                if upper > lower { body(UnsafeRawBufferPointer(rebasing: value[lower..<upper])) }
                start = index + 1
            }
            index += 1
        }
    }
}

import Glibc
