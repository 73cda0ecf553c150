/// A second reading of RFC 9112 §7.1, written for the differential fuzz target: whole input at
/// once, by position rather than by state, so that it shares no structure with `BodyFramer`.
/// It applies the same limits (digits, extension bytes, trailer bytes).
enum StrictChunkedReference {
    enum Result: Equatable {
        case error
        /// The input ends inside the body; `data` is the chunk data seen so far.
        case incomplete(data: [UInt8])
        /// `trailers`: the trailer field lines with their CRLFs, without the final CRLF.
        /// `canonical`: lowercase hex sizes without leading zeros and no extensions.
        case complete(consumed: Int, data: [UInt8], trailers: [UInt8], canonical: Bool)
    }

    private struct Incomplete: Error {}
    private struct Malformed: Error {}

    static func decode(_ input: [UInt8]) -> Result {
        var data: [UInt8] = []
        do {
            return try decode(input, data: &data)
        } catch is Incomplete {
            return .incomplete(data: data)
        } catch {
            return .error
        }
    }

    private static func decode(_ input: [UInt8], data: inout [UInt8]) throws -> Result {
        var position = 0
        var canonical = true

        func byte(at index: Int) throws -> UInt8 {
            guard index < input.count else { throw Incomplete() }
            return input[index]
        }
        func expectCRLF() throws {
            guard try byte(at: position) == 13 else { throw Malformed() }
            guard try byte(at: position + 1) == 10 else { throw Malformed() }
            position += 2
        }

        while true {
            // chunk-size = 1*HEXDIG
            let sizeStart = position
            var size = 0
            while let digit = hex(try byte(at: position)) {
                guard position - sizeStart < BodyFramer.maxChunkSizeDigits else { throw Malformed() }
                size = size * 16 + digit
                position += 1
            }
            guard position > sizeStart else { throw Malformed() }
            let digits = input[sizeStart..<position]
            if digits.count > 1 && digits.first == UInt8(ascii: "0") { canonical = false }
            if digits.contains(where: { (65...70).contains($0) }) { canonical = false }
            // chunk-ext, then CRLF
            let extensionStart = position
            if try byte(at: position) != 13 {
                canonical = false
                try skipExtensions(input, &position, limit: extensionStart + BodyFramer.maxExtensionBytes)
            }
            try expectCRLF()
            if size == 0 { break }
            let available = min(size, input.count - position)
            data += input[position..<(position + available)]
            guard available == size else { throw Incomplete() }
            position += size
            try expectCRLF()
        }
        // trailer-section CRLF
        let trailerStart = position
        while try byte(at: position) != 13 {
            let lineStart = position
            while isTokenChar(try byte(at: position)) {
                position += 1
                guard position - trailerStart <= BodyFramer.maxTrailerBytes else { throw Malformed() }
            }
            guard position > lineStart, try byte(at: position) == UInt8(ascii: ":") else { throw Malformed() }
            position += 1
            guard position - trailerStart <= BodyFramer.maxTrailerBytes else { throw Malformed() }
            while try byte(at: position) != 13 {
                let value = input[position]
                guard value == 9 || (value >= 32 && value != 127) else { throw Malformed() }
                position += 1
                guard position - trailerStart <= BodyFramer.maxTrailerBytes else { throw Malformed() }
            }
            guard position + 1 - trailerStart <= BodyFramer.maxTrailerBytes else { throw Malformed() }
            guard try byte(at: position + 1) == 10 else { throw Malformed() }
            position += 2
            guard position - trailerStart <= BodyFramer.maxTrailerBytes else { throw Malformed() }
        }
        let trailers = Array(input[trailerStart..<position])
        try expectCRLF()
        return .complete(consumed: position, data: data, trailers: trailers, canonical: canonical)
    }

    /// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), up to the CR.
    /// Every byte of it must lie before `limit` (the CR may sit at `limit`).
    private static func skipExtensions(_ input: [UInt8], _ position: inout Int, limit: Int) throws {
        func peek() throws -> UInt8 {
            guard position < input.count else { throw Incomplete() }
            guard position <= limit else { throw Malformed() }
            return input[position]
        }
        func skipBlanks() throws {
            while try peek() == 32 || peek() == 9 { position += 1 }
        }
        func token() throws {
            let start = position
            while isTokenChar(try peek()) { position += 1 }
            guard position > start else { throw Malformed() }
        }
        while true {
            try skipBlanks()
            guard try peek() == UInt8(ascii: ";") else { throw Malformed() }
            position += 1
            try skipBlanks()
            try token()
            // After the name: CR ends the line; ";" starts the next extension; "=" a value.
            // Blanks may only come before "=" or ";".
            let afterName = position
            try skipBlanks()
            let next = try peek()
            if next == 13 {
                guard position == afterName else { throw Malformed() }
                return
            }
            if next == UInt8(ascii: ";") { continue }
            guard next == UInt8(ascii: "=") else { throw Malformed() }
            position += 1
            try skipBlanks()
            if try peek() == UInt8(ascii: "\"") {
                position += 1
                while true {
                    let byte = try peek()
                    position += 1
                    if byte == UInt8(ascii: "\"") { break }
                    if byte == UInt8(ascii: "\\") {
                        let escaped = try peek()
                        guard escaped == 9 || (escaped >= 32 && escaped != 127) else { throw Malformed() }
                        position += 1
                    } else {
                        guard byte == 9 || (byte >= 32 && byte != 127) else { throw Malformed() }
                    }
                }
            } else {
                try token()
            }
            let afterValue = position
            try skipBlanks()
            if try peek() == 13 {
                guard position == afterValue else { throw Malformed() }
                return
            }
        }
    }

    private static func hex(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte) - 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte) - 87
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte) - 55
        default: return nil
        }
    }

    /// RFC 9110 §5.6.2 tchar, spelled out rather than shared with the parser under test.
    private static func isTokenChar(_ byte: UInt8) -> Bool {
        if (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) { return true }
        return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }
}
