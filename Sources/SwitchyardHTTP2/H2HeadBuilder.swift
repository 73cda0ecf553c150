import CNGHTTP2

/// Storage a request or response head is built in, as nghttp2 name/value pairs over one byte buffer,
/// reused for every head: once it has grown to the largest head, building one allocates
/// nothing. A head is built and submitted in one go, so the sessions of one thread share one.
public final class H2HeadBuilder {
    private var bytes: [UInt8] = []
    private var spans: [H2FieldSpan] = []
    private var list: [nghttp2_nv] = []
    private static let status: StaticString = ":status"

    public init() {}

    /// Starts an empty block (trailers).
    func begin() {
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
    }

    func begin(status: Int) {
        begin()
        var digits: (UInt8, UInt8, UInt8) = (UInt8(ascii: "0") + UInt8(status / 100 % 10), UInt8(ascii: "0") + UInt8(status / 10 % 10),
                                             UInt8(ascii: "0") + UInt8(status % 10))
        withUnsafeBytes(of: &digits) { add(name: Self.bytes(Self.status), value: $0, lowercase: false) }
    }

    /// Starts a request head with its pseudo-header fields.
    func begin(method: UnsafeRawBufferPointer, scheme: UnsafeRawBufferPointer, authority: UnsafeRawBufferPointer,
               path: UnsafeRawBufferPointer) {
        begin()
        add(name: Self.bytes(Self.method), value: method, lowercase: false)
        add(name: Self.bytes(Self.scheme), value: scheme, lowercase: false)
        add(name: Self.bytes(Self.authority), value: authority, lowercase: false)
        add(name: Self.bytes(Self.path), value: path, lowercase: false)
    }

    private static func bytes(_ text: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }

    private static let method: StaticString = ":method"
    private static let scheme: StaticString = ":scheme"
    private static let authority: StaticString = ":authority"
    private static let path: StaticString = ":path"

    func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, lowercase: Bool) {
        let nameStart = bytes.count
        if lowercase {
            for byte in name { bytes.append(byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) }
        } else {
            bytes.append(contentsOf: name)
        }
        let valueStart = bytes.count
        bytes.append(contentsOf: value)
        spans.append(H2FieldSpan(name: nameStart..<valueStart, value: valueStart..<bytes.count))
    }

    /// Adds owned fields as they are.
    func add(_ fields: [H2Field]) {
        for field in fields {
            field.name.withUnsafeBytes { name in field.value.withUnsafeBytes { value in add(name: name, value: value, lowercase: false) } }
        }
    }

    /// Calls `body` with the head as nghttp2 pairs (valid during the call).
    func withList(_ body: (UnsafePointer<nghttp2_nv>?, Int) -> Int32) -> Int32 {
        list.removeAll(keepingCapacity: true)
        return bytes.withUnsafeMutableBufferPointer { storage in
            // An empty block (trailers without fields) has no base address and no pairs.
            guard let base = storage.baseAddress else { return body(nil, 0) }
            for span in spans {
                list.append(nghttp2_nv(name: base + span.name.lowerBound, value: base + span.value.lowerBound,
                                       namelen: span.name.count, valuelen: span.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
            }
            return list.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
        }
    }
}
