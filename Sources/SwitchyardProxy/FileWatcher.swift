import CLinuxShims
import Glibc
import SwitchyardIO

/// Watches the directories of the hot files with inotify.
///
/// Watching the directory (not the file) sees every way a file is replaced: an editor's
/// write-then-rename, an in-place rewrite (reported when the writer closes the file, never
/// half-written), and a Kubernetes ConfigMap update, which swaps the `..data` symlink.
///
/// A watched path that is a symbolic link is followed link by link, and the directory of each
/// link in the chain is watched too: a file linked to a ConfigMap mounted elsewhere changes
/// when that directory's `..data` is swapped. The chains are followed again after every
/// relevant change, since a link may now point elsewhere.
final class FileWatcher {
    /// What one drain of the inotify queue found.
    struct Changes {
        /// A watched file (or a `..`-prefixed ConfigMap entry) changed, or something was lost
        /// and everything must be re-read.
        var relevant = false
        /// The kernel dropped events (IN_Q_OVERFLOW).
        var overflowed = false
        /// Directories whose watch went away (deleted, moved, unmounted); see `rewatch`.
        var lost: [String] = []
    }

    let fd: Int32
    /// The paths asked for, before their links are followed.
    private var requested: [String] = []
    private var names: [Int32: Set<String>] = [:]
    private var directories: [Int32: String] = [:]
    /// Directories to watch that have no watch now.
    private(set) var unwatched: Set<String> = []
    private var filesByDirectory: [String: Set<String>] = [:]
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// IN_MOVE_SELF: a moved directory's watch would follow it to its new name, so it counts
    /// as lost and the path is watched afresh.
    private static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVE_SELF)

    init(paths: [String]) throws(SystemError) {
        fd = Int32(try Syscall.call("inotify_init1") { Int(sy_inotify()) })
        requested = paths
        try watchChains(of: paths)
    }

    deinit { Syscall.close(fd) }

    /// Watches more files (their directories); files already watched are skipped.
    func add(paths: [String]) throws(SystemError) {
        requested += paths.filter { !requested.contains($0) }
        try watchChains(of: paths)
    }

    /// The directory of each path must be watchable; those of the links' targets are watched
    /// when they can be (a link may dangle until its target is made).
    private func watchChains(of paths: [String]) throws(SystemError) {
        for path in paths {
            for (index, link) in Self.linkChain(path).enumerated() {
                let (directory, name) = Self.split(link)
                guard filesByDirectory[directory]?.contains(name) != true else { continue }
                filesByDirectory[directory, default: []].insert(name)
                if let watch = directories.first(where: { $0.value == directory })?.key {
                    names[watch, default: []].insert(name)
                } else if unwatched.contains(directory) {
                    continue
                } else if index == 0 {
                    try watch(directory)
                } else {
                    try? watch(directory)
                }
            }
        }
    }

    private func watch(_ directory: String) throws(SystemError) {
        let watch = Int32(try Syscall.call("inotify_add_watch \(directory)") { Int(inotify_add_watch(fd, directory, Self.mask)) })
        names[watch, default: []].formUnion(filesByDirectory[directory] ?? [])
        directories[watch] = directory
        unwatched.remove(directory)
    }

    /// Watches again the directories whose watch was lost; returns the ones that came back.
    func rewatch() -> [String] {
        var back: [String] = []
        for directory in unwatched where (try? watch(directory)) != nil { back.append(directory) }
        return back
    }

    /// `path`, then each path its symbolic links lead to (at most 40, the kernel's own limit).
    static func linkChain(_ path: String) -> [String] {
        var chain = [path]
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        while chain.count <= 40 {
            let current = chain[chain.count - 1]
            let count = readlink(current, &buffer, buffer.count - 1)
            guard count > 0 else { break }
            let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let next = target.hasPrefix("/") ? target : split(current).directory + "/" + target
            guard !chain.contains(next) else { break }
            chain.append(next)
        }
        return chain
    }

    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// Reads pending events.
    func drain() -> Changes {
        var changes = Changes()
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count <= 0 {
                // Links may point elsewhere now; a directory that cannot be watched yet is
                // tried again with the lost ones.
                if changes.relevant { try? watchChains(of: requested) }
                return changes
            }
            var events: [(wd: Int32, mask: UInt32, name: String)] = []
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= count {
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let nameBytes = raw[nameStart..<min(nameStart + Int(event.len), count)].prefix { $0 != 0 }
                    events.append((event.wd, event.mask, String(decoding: nameBytes, as: UTF8.self)))
                    offset = nameStart + Int(event.len)
                }
            }
            for event in events {
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    changes.overflowed = true
                    changes.relevant = true
                } else if event.mask & UInt32(IN_IGNORED | IN_MOVE_SELF) != 0 {
                    if let directory = directories.removeValue(forKey: event.wd) {
                        names[event.wd] = nil
                        if event.mask & UInt32(IN_MOVE_SELF) != 0 { _ = inotify_rm_watch(fd, event.wd) }
                        unwatched.insert(directory)
                        changes.lost.append(directory)
                        changes.relevant = true
                    }
                } else if names[event.wd]?.contains(event.name) == true || event.name.hasPrefix("..") {
                    changes.relevant = true
                }
            }
        }
    }
}
