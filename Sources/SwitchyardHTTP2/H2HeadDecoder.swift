/// Collects a header block's fields as nghttp2 decodes them, in storage reused for every block:
/// the bytes of names and values in one buffer, the fields as ranges into it, and the
/// pseudo-header fields the owner asked for in slots of their own. A steady connection
/// allocates nothing here. Header blocks of different streams never interleave (RFC 9113
/// §4.3), so one decoder per session is enough.
struct H2HeadDecoder {
    private(set) var bytes: [UInt8] = []
    private(set) var spans: [H2FieldSpan] = []
    /// The values of `pseudoNames`, in their order (empty when absent).
    private(set) var pseudo: [Range<Int>]
    /// Decoded size in the RFC 9113 §6.5.2 sense (name + value + 32 per field).
    private(set) var listBytes = 0
    /// The stream whose block is being decoded; 0 for none.
    private(set) var stream: Int32 = 0
    private let pseudoNames: [StaticString]

    init(pseudoNames: [StaticString]) {
        self.pseudoNames = pseudoNames
        pseudo = Array(repeating: 0..<0, count: pseudoNames.count)
    }

    mutating func begin(stream: Int32) {
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
        for index in pseudo.indices { pseudo[index] = 0..<0 }
        listBytes = 0
        self.stream = stream
    }

    /// Adds a field of `stream`'s block; false once the block is over `limit` bytes.
    mutating func add(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, limit: Int) -> Bool {
        guard stream == self.stream else { return true }
        listBytes += name.count + value.count + 32
        guard listBytes <= limit else { return false }
        let nameStart = bytes.count
        bytes.append(contentsOf: name)
        let valueStart = bytes.count
        bytes.append(contentsOf: value)
        let valueRange = valueStart..<bytes.count
        if name.first == UInt8(ascii: ":") {
            // Others (`:protocol`, extended CONNECT) are refused by nghttp2 unless enabled.
            if let index = pseudoIndex(name) { pseudo[index] = valueRange }
        } else {
            spans.append(H2FieldSpan(name: nameStart..<valueStart, value: valueRange))
        }
        return true
    }

    /// Ends `stream`'s block: true when it was the one being decoded.
    mutating func end(stream: Int32) -> Bool {
        guard stream == self.stream else { return false }
        self.stream = 0
        return true
    }

    /// Calls `body` with the block's bytes and fields (valid during the call).
    func withFields<Result>(_ body: (UnsafeRawBufferPointer, H2FieldsView) -> Result) -> Result {
        bytes.withUnsafeBytes { body($0, H2FieldsView(bytes: $0, spans: spans)) }
    }

    private func pseudoIndex(_ name: UnsafeRawBufferPointer) -> Int? {
        for index in pseudoNames.indices {
            let pseudo = pseudoNames[index]
            if name.count == pseudo.utf8CodeUnitCount,
               name.elementsEqual(UnsafeRawBufferPointer(start: pseudo.utf8Start, count: pseudo.utf8CodeUnitCount)) {
                return index
            }
        }
        return nil
    }
}
