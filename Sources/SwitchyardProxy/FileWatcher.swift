import CLinuxShims
import Glibc
import SwitchyardIO

/// Watches the directories of the hot files with inotify.
///
/// Watching the directory (not the file) sees every way a file is replaced: an editor's
/// write-then-rename, an in-place rewrite (reported when the writer closes the file, never
/// half-written), and a Kubernetes ConfigMap update, which swaps the `..data` symlink.
final class FileWatcher {
    let fd: Int32
    private var names: [Int32: Set<String>] = [:]
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    init(paths: [String]) throws(SystemError) {
        fd = Int32(try Syscall.call("inotify_init1") { Int(sy_inotify()) })
        var byDirectory: [String: Set<String>] = [:]
        for path in paths {
            let (directory, name) = Self.split(path)
            byDirectory[directory, default: []].insert(name)
        }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE)
        for (directory, files) in byDirectory {
            let watch = Int32(try Syscall.call("inotify_add_watch \(directory)") { Int(inotify_add_watch(fd, directory, mask)) })
            names[watch, default: []].formUnion(files)
        }
    }

    deinit { Syscall.close(fd) }

    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// Reads pending events; true if any concerns a watched file (or a `..`-prefixed
    /// ConfigMap entry such as `..data`).
    func drainRelevant() -> Bool {
        var relevant = false
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return relevant }
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= count {
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let nameBytes = raw[nameStart..<min(nameStart + Int(event.len), count)].prefix { $0 != 0 }
                    let name = String(decoding: nameBytes, as: UTF8.self)
                    if names[event.wd]?.contains(name) == true || name.hasPrefix("..") { relevant = true }
                    offset = nameStart + Int(event.len)
                }
            }
        }
    }
}
