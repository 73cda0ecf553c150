import Glibc

/// Whole-file reads for configuration (control thread only).
public enum FileIO {
    /// Reads a regular file. Anything else is refused before a byte is read: opening a FIFO
    /// blocks until a writer comes, and a device or a socket may never end. The file is opened
    /// non-blocking, so even a FIFO swapped in between the check and the open cannot stall the
    /// control thread.
    public static func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        let fd = Int32(try Syscall.call("open \(path)") { Int(open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) })
        defer { Syscall.close(fd) }
        var status = stat()
        _ = try Syscall.call("fstat \(path)") { Int(fstat(fd, &status)) }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw SystemError("read \(path)", errno: EINVAL, detail: "not a regular file (\(kind(status.st_mode))); give a path to a file")
        }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try Syscall.call("read \(path)") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            if result.count > 64 << 20 { throw SystemError("read \(path)", errno: EFBIG, detail: "file larger than 64 MiB") }
        }
    }

    /// Opens a log file for appending, creating it (mode 0640) if needed. Blocking writes: for
    /// a writer thread of its own, never a worker. The open itself never blocks (a FIFO
    /// without a reader fails with ENXIO instead of stalling the caller, the control thread).
    public static func openForAppending(_ path: String) throws(SystemError) -> Int32 {
        let fd = Int32(try Syscall.call("open \(path)") { Int(open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0o640)) })
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 {
            let error = errno
            Syscall.close(fd)
            throw SystemError("fcntl \(path)", errno: error)
        }
        return fd
    }

    /// Writes every byte, waiting as long as the destination needs (a pipe may be full).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let count = try Syscall.call("write") { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += count
        }
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFDIR: return "a directory"
        case S_IFCHR, S_IFBLK: return "a device"
        case S_IFSOCK: return "a socket"
        default: return "not a file"
        }
    }
}
