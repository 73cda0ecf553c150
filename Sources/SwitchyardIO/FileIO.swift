import Glibc

/// Whole-file reads for configuration (control thread only: this blocks).
public enum FileIO {
    public static func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        let fd = Int32(try Syscall.call("open \(path)") { Int(open(path, O_RDONLY | O_CLOEXEC)) })
        defer { Syscall.close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try Syscall.call("read \(path)") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            if result.count > 64 << 20 { throw SystemError("read \(path) (file larger than 64 MiB)", errno: EFBIG) }
        }
    }
}
