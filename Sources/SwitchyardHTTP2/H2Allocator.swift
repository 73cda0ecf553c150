import CNGHTTP2
import Glibc

/// Memory for nghttp2 from free lists of one thread: nghttp2 allocates per stream (the stream,
/// its outbound frames, copies of header fields, decoded field buffers), and with its sessions
/// on one worker those blocks come back to the same lists, so a steady connection calls malloc
/// for none of them. Written by hand: it sits on the per-stream path and no library offers
/// a per-thread allocator for nghttp2's `nghttp2_mem`.
///
/// Blocks are size classes from 64 bytes to 2 KiB, a half step apart (what nghttp2 takes per
/// stream); a block carries its class in a 16-byte header. Larger requests, and those made
/// while a session is created (the session itself, its HPACK tables), go to malloc at their
/// size: rounding them up would cost every idle connection memory. Each list keeps a bounded
/// number of free blocks; more go back to malloc, so a burst does not pin memory.
///
/// Requests of a page or more (per session: the 16 KiB frame buffer and the stream map) get
/// pages of their own, known by their address (`pageBlocks`), with no header in front: an idle
/// session can then give those pages back to the kernel (`discard`) while keeping them, and
/// they come back zero-filled when next touched.
///
/// One thread only: the sessions given this allocator must all be used, and freed, on it.
public final class H2Allocator {
    private static let classCount = 11
    private static let header = 16
    private static let direct = UInt8.max
    /// The free blocks of every class in one array (class `i` from `firstSlots[i]`, up to
    /// `maxFree(i)` of them), and how many each class holds: no Swift array on the path, so
    /// no reference counting or uniqueness check per block.
    private let slots: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let firstSlots: UnsafeMutablePointer<Int>
    private let counts: UnsafeMutablePointer<Int>
    /// Blocks taken from malloc so far (for tests: a steady session takes none).
    public private(set) var systemAllocations = 0
    /// The blocks of whole pages handed out, by address, with their size (a multiple of the
    /// page size). A block of a size class can also start on a page boundary: it is not here.
    private var pageBlocks: [UnsafeMutableRawPointer: Int] = [:]
    /// Page blocks handed out since `startRecording`, while a session is being created (nil
    /// at other times).
    private var recorded: [PageBlock]?
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    /// Handed to nghttp2; its user data is this object, unretained (the allocator outlives its
    /// sessions: the worker that owns both frees the sessions first).
    private(set) var memory = nghttp2_mem()

    public init() {
        firstSlots = .allocate(capacity: Self.classCount + 1)
        firstSlots[0] = 0
        for index in 0..<Self.classCount { firstSlots[index + 1] = firstSlots[index] + Self.maxFree(index) }
        slots = .allocate(capacity: firstSlots[Self.classCount])
        counts = .allocate(capacity: Self.classCount)
        counts.initialize(repeating: 0, count: Self.classCount)
        memory = nghttp2_mem(
            mem_user_data: Unmanaged.passUnretained(self).toOpaque(),
            malloc: { size, user in withAllocator(user) { $0.allocate(size) } },
            free: { pointer, user in withAllocator(user) { $0.deallocate(pointer) } },
            calloc: { count, size, user in
                let total = count.multipliedReportingOverflow(by: size)
                guard !total.overflow, let pointer = withAllocator(user, { $0.allocate(total.partialValue) }) else { return nil }
                memset(pointer, 0, total.partialValue)
                return pointer
            },
            realloc: { pointer, size, user in withAllocator(user) { $0.reallocate(pointer, size) } })
    }

    deinit {
        for index in 0..<Self.classCount {
            for slot in firstSlots[index]..<(firstSlots[index] + counts[index]) { Glibc.free(slots[slot]) }
        }
        slots.deallocate()
        firstSlots.deallocate()
        counts.deallocate()
    }

    /// Block sizes (header included): 64 bytes to 2 KiB, a half step apart.
    private static func classSize(_ index: Int) -> Int {
        let power = 64 << (index / 2)
        return index % 2 == 0 ? power : power + power / 2
    }

    /// Free blocks kept per class: 4096 of the small ones down to 256 of 2 KiB.
    private static func maxFree(_ index: Int) -> Int {
        4096 >> max((index - 2) / 2, 0)
    }

    private static func sizeClass(_ size: Int) -> Int? {
        let needed = size + header
        for index in 0..<classCount where classSize(index) >= needed { return index }
        return nil
    }

    /// The usable bytes of a block handed out.
    private static func capacity(_ base: UnsafeMutableRawPointer) -> Int {
        let index = base.load(as: UInt8.self)
        return index == direct ? base.load(fromByteOffset: 8, as: Int.self) : classSize(Int(index)) - header
    }

    func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size >= Self.pageSize { return allocatePages(size) }
        // While a session is being created, what nghttp2 asks for lives as long as the session
        // (its HPACK tables, its buffer list): the exact size, not a class rounded up.
        guard recorded == nil, let index = Self.sizeClass(size) else {
            guard let base = malloc(size + Self.header) else { return nil }
            systemAllocations += 1
            base.storeBytes(of: Self.direct, as: UInt8.self)
            base.storeBytes(of: size, toByteOffset: 8, as: Int.self)
            return base + Self.header
        }
        let base: UnsafeMutableRawPointer
        if counts[index] > 0 {
            counts[index] -= 1
            base = slots[firstSlots[index] + counts[index]]
        } else {
            guard let fresh = malloc(Self.classSize(index)) else { return nil }
            systemAllocations += 1
            base = fresh
        }
        base.storeBytes(of: UInt8(index), as: UInt8.self)
        return base + Self.header
    }

    func deallocate(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        if Self.startsPage(pointer), pageBlocks.removeValue(forKey: pointer) != nil { return Glibc.free(pointer) }
        let base = pointer - Self.header
        let index = Int(base.load(as: UInt8.self))
        if index != Int(Self.direct), counts[index] < Self.maxFree(index) {
            slots[firstSlots[index] + counts[index]] = base
            counts[index] += 1
        } else {
            Glibc.free(base)
        }
    }

    func reallocate(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
        guard let pointer else { return allocate(size) }
        let pages = Self.startsPage(pointer) ? pageBlocks[pointer] : nil
        let old = pages ?? Self.capacity(pointer - Self.header)
        if size <= old && (pages != nil || Self.sizeClass(size) != nil) { return pointer }
        guard let moved = allocate(size) else { return nil }
        moved.copyMemory(from: pointer, byteCount: min(old, size))
        deallocate(pointer)
        return moved
    }
}

extension H2Allocator {
    /// Pages handed to nghttp2 as one block.
    struct PageBlock {
        let base: UnsafeMutableRawPointer
        /// What nghttp2 asked for.
        let requested: Int
        /// What the block spans: whole pages.
        let size: Int
    }

    private static func startsPage(_ pointer: UnsafeMutableRawPointer) -> Bool {
        Int(bitPattern: pointer) & (pageSize - 1) == 0
    }

    private func allocatePages(_ size: Int) -> UnsafeMutableRawPointer? {
        let (rounded, overflow) = size.addingReportingOverflow(Self.pageSize - 1)
        guard !overflow else { return nil }
        let spanned = rounded & ~(Self.pageSize - 1)
        var base: UnsafeMutableRawPointer?
        guard posix_memalign(&base, Self.pageSize, spanned) == 0, let base else { return nil }
        systemAllocations += 1
        pageBlocks[base] = spanned
        recorded?.append(PageBlock(base: base, requested: size, size: spanned))
        return base
    }

    /// Starts noting the page blocks handed out, until `stopRecording`.
    func startRecording() { recorded = [] }

    /// The page blocks handed out since `startRecording` (and still held).
    func stopRecording() -> [PageBlock] {
        defer { recorded = nil }
        return (recorded ?? []).filter { pageBlocks[$0.base] != nil }
    }

    /// Gives the block's pages back to the kernel; they stay the owner's and read as zeros
    /// until written again. Only for bytes nobody will read before writing them, or zeros.
    func discard(_ block: PageBlock) {
        _ = madvise(block.base, block.size, MADV_DONTNEED)
    }

    /// How many of the block's bytes are in memory (for tests).
    static func residentBytes(_ block: PageBlock) -> Int {
        var pages = [UInt8](repeating: 0, count: block.size / pageSize)
        guard mincore(block.base, block.size, &pages) == 0 else { return -1 }
        return pages.reduce(0) { $0 + Int($1 & 1) } * pageSize
    }

    /// Whether every byte of the block is zero.
    static func isZero(_ block: PageBlock) -> Bool {
        let words = block.base.assumingMemoryBound(to: UInt64.self)
        for index in 0..<(block.size / 8) where words[index] != 0 { return false }
        return true
    }
}

/// Calls `body` with the allocator nghttp2 passes back, without retaining it (the allocator
/// outlives every session that uses it).
private func withAllocator<T>(_ user: UnsafeMutableRawPointer?, _ body: (H2Allocator) -> T) -> T {
    // Safe because nghttp2 passes back the `mem_user_data` set in `H2Allocator.init`.
    Unmanaged<H2Allocator>.fromOpaque(user.unsafelyUnwrapped)._withUnsafeGuaranteedRef(body)
}
