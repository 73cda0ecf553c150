import Glibc
import Synchronization
import SwitchyardIO

/// A worker's side of the access log: formats one JSON line per finished exchange straight
/// into a pre-allocated block (no allocation, no lock per request) and hands full blocks, and
/// on every tick the one in use, to the `AccessLogWriter`.
///
///     {"time":"2026-11-30T06:33:16.125Z","request_id":"…","client":"10.0.0.7","method":"GET",
///      "path":"/v1/chat","protocol":"HTTP/1.1","status":200,"version":"v2","route":"weighted",
///      "endpoint":"10.0.1.12:8000","attempts":1,"connect_ms":0.21,"first_byte_ms":35.2,
///      "total_ms":36.0,"bytes_to_backend":412,"bytes_to_client":1873,"error":null,"worker":1}
///
/// No header is logged, so no token can be: the Authorization header never reaches the log.
final class WorkerAccessLog {
    /// The longest line: fixed fields plus the method, path and request id at their caps, all
    /// escaped at worst (6 bytes per byte).
    static let maxLineBytes = 1024 + 6 * (RequestSummary.maxPath + RequestSummary.maxMethod + RequestSummary.maxRequestID)

    let writer: AccessLogWriter
    private let worker: [UInt8]
    private var block: AccessLogBuffer?
    /// Lines dropped because no block was free (the writer is behind), in all; copied to
    /// the worker's stats on the tick for `/metrics`.
    private var dropped: UInt64 = 0
    private let stats: WorkerStats
    private var clock = SecondText()

    init(writer: AccessLogWriter, worker: Int, stats: WorkerStats) {
        self.stats = stats
        self.writer = writer
        self.worker = Array(String(worker).utf8)
        self.block = writer.takeFree()
    }

    var capturesQuery: Bool { writer.settings.query }

    /// Whether an exchange that got `status` is logged: every error, and the sampled share of the rest.
    @inline(__always)
    func wants(status: Int, failed: Bool, random: UInt64) -> Bool {
        let percent = writer.settings.samplePercent
        return percent >= 100 || failed || status >= 500 || Int(random % 100) < percent
    }

    /// Appends the line of a finished exchange.
    func record(_ x: Exchange, client: [UInt8], status: Int, error: ProxyError?) {
        guard let out = blockWithRoom() else {
            dropped += 1
            return
        }
        let timings = x.timings
        out.append("{\"time\":\"")
        clock.append(wallNs: Clock.wallNs(), to: out)
        out.append("\",\"request_id\":")
        if x.summary.requestIDLength > 0 {
            out.appendQuoted(x.summary.requestID)
        } else if x.generatedRequestID {
            out.append("\"")
            out.appendHex(x.requestID.high)
            out.appendHex(x.requestID.low)
            out.append("\"")
        } else {
            out.append("null")
        }
        out.append(",\"client\":")
        client.withUnsafeBytes { out.appendQuoted($0) }
        out.append(",\"method\":")
        out.appendQuotedOrNull(x.summary.method)
        out.append(",\"path\":")
        out.appendQuotedOrNull(x.summary.path)
        out.append(",\"protocol\":")
        switch x.summary.httpVersion {
        case 10: out.append("\"HTTP/1.0\"")
        case 11: out.append("\"HTTP/1.1\"")
        case 20: out.append("\"HTTP/2\"")
        default: out.append("null")
        }
        out.append(",\"status\":")
        if status > 0 { out.appendDecimal(UInt64(status)) } else { out.append("null") }
        out.append(",\"grpc_status\":")
        if x.grpcStatus >= 0 { out.appendDecimal(UInt64(x.grpcStatus)) } else { out.append("null") }
        out.append(",\"version\":")
        if let routes = x.routes {
            routes.versionNames[x.versionIndex].withUnsafeBytes { out.appendQuoted($0) }
            out.append(x.route == .pinned ? ",\"route\":\"pinned\"" : ",\"route\":\"weighted\"")
        } else {
            out.append("null,\"route\":null")
        }
        out.append(",\"endpoint\":")
        if let pool = x.endpoint { pool.addressText.withUnsafeBytes { out.appendQuoted($0) } } else { out.append("null") }
        out.append(",\"attempts\":")
        out.appendDecimal(x.endpoint == nil ? 0 : UInt64(x.retries + 1))
        out.append(",\"connect_ms\":")
        out.appendMillis(from: timings.headParsed, to: timings.upstreamConnected)
        out.append(",\"first_byte_ms\":")
        out.appendMillis(from: timings.upstreamConnected, to: timings.firstResponseByte)
        out.append(",\"total_ms\":")
        out.appendMillis(from: timings.started, to: timings.finished)
        out.append(",\"bytes_to_backend\":")
        out.appendDecimal(UInt64(x.upstreamBytes))
        out.append(",\"bytes_to_client\":")
        out.appendDecimal(UInt64(x.clientBytes))
        out.append(",\"error\":")
        if let error { out.append("\""); out.append(error.label); out.append("\"") } else { out.append("null") }
        out.append(",\"worker\":")
        worker.withUnsafeBytes { out.append($0) }
        out.append("}\n")
        out.lines += 1
    }

    /// Hands the block in use to the writer: on the tick (if the writer has a free block to
    /// give back; otherwise this one keeps filling), and for good when the worker stops.
    func flush(final: Bool = false) {
        stats.accessLogDropped.store(dropped, ordering: .relaxed)
        guard let current = block, current.count > 0 else { return }
        let fresh = writer.takeFree()
        guard fresh != nil || final else { return }
        writer.submit(current)
        block = fresh
    }

    /// The block in use if a line of any length fits, else a fresh one; nil when none is free.
    private func blockWithRoom() -> AccessLogBuffer? {
        if let current = block, current.room >= Self.maxLineBytes { return current }
        if let current = block, current.count > 0 { writer.submit(current) }
        block = writer.takeFree()
        return block
    }
}

/// What the access log needs of a request head, copied when the exchange starts: the head's
/// bytes are consumed long before the exchange finishes. Stored in one allocation per pooled
/// exchange (made on its first logged request), so logging allocates nothing per request.
struct RequestSummary {
    static let maxMethod = 32
    static let maxPath = 1024
    static let maxRequestID = 128
    private static let size = maxMethod + maxPath + maxRequestID

    private var storage: UnsafeMutableRawPointer?
    private(set) var methodLength = 0
    private(set) var pathLength = 0
    private(set) var requestIDLength = 0
    /// 10 or 11 for HTTP/1.0 or 1.1; 0 before a head was parsed.
    var httpVersion: UInt8 = 0

    var method: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: methodLength) }
    var path: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage.map { $0 + Self.maxMethod }, count: pathLength) }
    var requestID: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { $0 + Self.maxMethod + Self.maxPath }, count: requestIDLength)
    }

    /// Copies the method, the target (up to `?` unless `query`) and a client's request id,
    /// each cut at its cap.
    mutating func capture(method: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, requestID: UnsafeRawBufferPointer?, query: Bool) {
        let base = storage ?? UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 8)
        storage = base
        methodLength = Self.copy(method, to: base, cap: Self.maxMethod)
        var target = target
        if !query, let mark = target.firstIndex(of: UInt8(ascii: "?")) { target = UnsafeRawBufferPointer(rebasing: target[..<mark]) }
        pathLength = Self.copy(target, to: base + Self.maxMethod, cap: Self.maxPath)
        requestIDLength = requestID.map { Self.copy($0, to: base + Self.maxMethod + Self.maxPath, cap: Self.maxRequestID) } ?? 0
    }

    mutating func clear() {
        methodLength = 0
        pathLength = 0
        requestIDLength = 0
        httpVersion = 0
    }

    /// Frees the storage (when the exchange object itself goes).
    mutating func deallocate() {
        storage?.deallocate()
        storage = nil
    }

    private static func copy(_ bytes: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer, cap: Int) -> Int {
        let count = min(bytes.count, cap)
        if count > 0 { destination.copyMemory(from: bytes.baseAddress!, byteCount: count) }
        return count
    }
}

/// The current UTC second as RFC 3339 text (`2026-11-30T06:33:16.`), formatted once per second.
private struct SecondText {
    private var second = -1
    private var text = [UInt8](repeating: 0, count: 20)

    mutating func append(wallNs: UInt64, to out: AccessLogBuffer) {
        let seconds = Int(wallNs / 1_000_000_000)
        if seconds != second { format(seconds) }
        text.withUnsafeBytes { out.append($0) }
        let millis = Int(wallNs / 1_000_000 % 1000)
        let end = out.storage + out.count
        end.storeBytes(of: UInt8(48 + millis / 100), toByteOffset: 0, as: UInt8.self)
        end.storeBytes(of: UInt8(48 + millis / 10 % 10), toByteOffset: 1, as: UInt8.self)
        end.storeBytes(of: UInt8(48 + millis % 10), toByteOffset: 2, as: UInt8.self)
        end.storeBytes(of: UInt8(ascii: "Z"), toByteOffset: 3, as: UInt8.self)
        out.count += 4
    }

    private mutating func format(_ seconds: Int) {
        second = seconds
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var index = 0
        func put(_ value: Int32, _ width: Int, _ separator: UInt8) {
            var divisor: Int32 = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                text[index] = UInt8(48 + value / divisor % 10)
                index += 1
                divisor /= 10
            }
            text[index] = separator
            index += 1
        }
        put(parts.tm_year + 1900, 4, UInt8(ascii: "-"))
        put(parts.tm_mon + 1, 2, UInt8(ascii: "-"))
        put(parts.tm_mday, 2, UInt8(ascii: "T"))
        put(parts.tm_hour, 2, UInt8(ascii: ":"))
        put(parts.tm_min, 2, UInt8(ascii: ":"))
        put(parts.tm_sec, 2, UInt8(ascii: "."))
    }
}
