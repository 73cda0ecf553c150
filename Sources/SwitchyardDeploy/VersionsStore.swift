import Glibc
import SwitchyardIO
import SwitchyardRouting

/// A versions file as one writer read it, and the compare-and-swap that writes the next state
/// over it: under an advisory lock on the file's directory, the file is read again and
/// replaced (temporary file, fsync, rename, fsync of the directory) only if its bytes are
/// still the ones read. A hand edit that keeps the generation is caught too, since the bytes
/// are compared, not the generation.
public struct VersionsStore: Sendable {
    public let path: String
    /// What was read; nil when there was no file.
    public let bytes: [UInt8]?
    public let document: VersionsDocument?

    /// How long a writer waits for another one's lock.
    public enum LockWait: Sendable {
        /// Until it is free (the CLI: another writer finishes in moments).
        case blocking
        /// At most this long, then a conflict (the admin API, on the control thread).
        case milliseconds(Int)
    }

    /// Reads `path`; a missing file reads as no document (a deploy may create it).
    public static func read(_ path: String) throws(DeployError) -> VersionsStore {
        try refuseSymlink(path)
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readAll(path)
        } catch where error.errno == ENOENT {
            return VersionsStore(path: path, bytes: nil, document: nil)
        } catch {
            throw DeployError(.failed, "\(path): cannot read the versions file (\(error))")
        }
        do {
            return VersionsStore(path: path, bytes: bytes, document: try VersionsDocument(parsing: bytes, file: path))
        } catch {
            throw DeployError(.invalid, "\(error)\n(fix the versions file by hand first, or see switchyard history)")
        }
    }

    /// A ConfigMap's file is a chain of links into a directory Kubernetes owns; renaming over
    /// it would break the mount, so such files are written with --stdout instead.
    private static func refuseSymlink(_ path: String) throws(DeployError) {
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFLNK else { return }
        throw DeployError(.invalid, """
            \(path) is a symbolic link (a Kubernetes ConfigMap?); it is not replaced in place. \
            Write the result with --stdout (… --stdout | kubectl create configmap … --from-file=versions.json=/dev/stdin) \
            or give --versions-file a regular file
            """)
    }

    /// Writes `next` over the file if it is still what was read; `audit`, when given, is a
    /// JSON-lines file that gets the write's record appended.
    public func commit(_ next: VersionsDocument, wait: LockWait = .blocking, audit: String? = nil) throws(DeployError) {
        let directory = Self.directory(of: path)
        let lock = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lock >= 0 else { throw DeployError(.failed, "\(directory): cannot open the directory to lock it (\(SystemError("open", errno: errno)))") }
        defer { close(lock) }
        try Self.lock(lock, directory: directory, wait: wait)
        let now: [UInt8]?
        do {
            now = try FileIO.readAll(path)
        } catch where error.errno == ENOENT {
            now = nil
        } catch {
            throw DeployError(.failed, "\(path): cannot read the versions file again (\(error))")
        }
        guard now == bytes else { throw conflict(now) }
        try Self.replace(path, in: directory, directoryFD: lock, with: next.bytes)
        if let audit { try Self.append(next.auditRecord, to: audit) }
    }

    private func conflict(_ now: [UInt8]?) -> DeployError {
        let before = document?.generation ?? 0
        var what = "removed"
        if let now {
            if let document = try? VersionsDocument(parsing: now, file: path) {
                let actor = document.change?[member: "actor"].flatMap { node -> String? in
                    if case .string(let text) = node.value { return text }
                    return nil
                }
                what = "generation \(before) → \(document.generation)"
                    + (document.generation == before ? ", edited by hand" : actor.map { " by \($0)" } ?? "")
            } else {
                what = "generation \(before) → a file that does not read as one"
            }
        }
        return DeployError(.conflict, "\(path) changed since it was read (\(what)); run again")
    }

    private static func lock(_ fd: Int32, directory: String, wait: LockWait) throws(DeployError) {
        switch wait {
        case .blocking:
            while flock(fd, LOCK_EX) != 0 {
                guard errno == EINTR else { throw DeployError(.failed, "\(directory): cannot lock (\(SystemError("flock", errno: errno)))") }
            }
        case .milliseconds(let limit):
            var waited = 0
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                guard errno == EWOULDBLOCK || errno == EINTR else {
                    throw DeployError(.failed, "\(directory): cannot lock (\(SystemError("flock", errno: errno)))")
                }
                guard waited < limit else { throw DeployError(.conflict, "\(directory) is locked by another writer; run again") }
                usleep(10_000)
                waited += 10
            }
        }
    }

    /// Temporary file beside it, fsync, rename over it, fsync of the directory: the file is
    /// the old bytes or the new ones, whatever happens.
    private static func replace(_ path: String, in directory: String, directoryFD: Int32, with bytes: [UInt8]) throws(DeployError) {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let temporary = "\(directory)/.\(base).\(getpid()).tmp"
        var mode: mode_t = 0o644
        var status = stat()
        if stat(path, &status) == 0 { mode = status.st_mode & 0o7777 }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw DeployError(.failed, "\(temporary): cannot create (\(SystemError("open", errno: errno)))") }
        do {
            try write(bytes, to: fd)
            _ = try Syscall.call("fchmod") { Int(fchmod(fd, mode)) }
            _ = try Syscall.call("fsync") { Int(fsync(fd)) }
        } catch {
            close(fd)
            unlink(temporary)
            throw DeployError(.failed, "\(temporary): cannot write (\(error))")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = SystemError("rename", errno: errno)
            unlink(temporary)
            throw DeployError(.failed, "\(path): cannot replace (\(error))")
        }
        _ = fsync(directoryFD)
    }

    private static func append(_ line: String, to path: String) throws(DeployError) {
        do {
            let fd = try FileIO.openForAppending(path)
            defer { close(fd) }
            try write(Array((line + "\n").utf8), to: fd)
            _ = fsync(fd)
        } catch {
            throw DeployError(.failed, "\(path): the versions file was written, but the audit log was not (\(error))")
        }
    }

    private static func write(_ bytes: [UInt8], to fd: Int32) throws(SystemError) {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try FileIO.writeAll(fd, buffer) } }
        try result.get()
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}
