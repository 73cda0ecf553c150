import CNGHTTP2
import Glibc

/// Memory for nghttp2 from free lists of one thread: nghttp2 allocates per stream (the stream,
/// its outbound frames, copies of header fields, decoded field buffers), and with its sessions
/// on one worker those blocks come back to the same lists, so a steady connection calls malloc
/// for none of them. Written by hand: it sits on the per-stream path and no library offers
/// a per-thread allocator for nghttp2's `nghttp2_mem`.
///
/// Blocks are size classes from 64 bytes to 2 KiB, a half step apart (what nghttp2 takes per
/// stream); a block carries its class in a 16-byte header. Larger requests, made once per
/// session (the session, its HPACK tables, its 16 KiB frame buffer), go to malloc at their
/// size: rounding them up would cost every idle connection memory. Each list keeps a bounded
/// number of free blocks; more go back to malloc, so a burst does not pin memory.
///
/// One thread only: the sessions given this allocator must all be used, and freed, on it.
public final class H2Allocator {
    private static let classSizes = [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
    private static let maxFree = [4096, 4096, 4096, 4096, 2048, 2048, 1024, 1024, 512, 512, 256]
    private static let header = 16
    private static let direct = UInt8.max
    private var free: [[UnsafeMutableRawPointer]]
    /// Blocks taken from malloc so far (for tests: a steady session takes none).
    public private(set) var systemAllocations = 0
    /// Handed to nghttp2; its user data is this object, unretained (the allocator outlives its
    /// sessions: the worker that owns both frees the sessions first).
    private(set) var memory = nghttp2_mem()

    public init() {
        free = Self.maxFree.map { limit in
            var list: [UnsafeMutableRawPointer] = []
            list.reserveCapacity(limit)
            return list
        }
        memory = nghttp2_mem(
            mem_user_data: Unmanaged.passUnretained(self).toOpaque(),
            malloc: { size, user in allocator(user).allocate(size) },
            free: { pointer, user in allocator(user).deallocate(pointer) },
            calloc: { count, size, user in
                let total = count.multipliedReportingOverflow(by: size)
                guard !total.overflow, let pointer = allocator(user).allocate(total.partialValue) else { return nil }
                memset(pointer, 0, total.partialValue)
                return pointer
            },
            realloc: { pointer, size, user in allocator(user).reallocate(pointer, size) })
    }

    deinit {
        for list in free {
            for block in list { Glibc.free(block) }
        }
    }

    private static func sizeClass(_ size: Int) -> Int? {
        let needed = size + header
        return classSizes.firstIndex { $0 >= needed }
    }

    /// The usable bytes of a block handed out.
    private static func capacity(_ base: UnsafeMutableRawPointer) -> Int {
        let index = base.load(as: UInt8.self)
        return index == direct ? base.load(fromByteOffset: 8, as: Int.self) : classSizes[Int(index)] - header
    }

    func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        guard let index = Self.sizeClass(size) else {
            guard let base = malloc(size + Self.header) else { return nil }
            systemAllocations += 1
            base.storeBytes(of: Self.direct, as: UInt8.self)
            base.storeBytes(of: size, toByteOffset: 8, as: Int.self)
            return base + Self.header
        }
        let base: UnsafeMutableRawPointer
        if let recycled = free[index].popLast() {
            base = recycled
        } else {
            guard let fresh = malloc(Self.classSizes[index]) else { return nil }
            systemAllocations += 1
            base = fresh
        }
        base.storeBytes(of: UInt8(index), as: UInt8.self)
        return base + Self.header
    }

    func deallocate(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        let base = pointer - Self.header
        let index = base.load(as: UInt8.self)
        if index != Self.direct, free[Int(index)].count < Self.maxFree[Int(index)] {
            free[Int(index)].append(base)
        } else {
            Glibc.free(base)
        }
    }

    func reallocate(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
        guard let pointer else { return allocate(size) }
        let old = Self.capacity(pointer - Self.header)
        if size <= old && Self.sizeClass(size) != nil { return pointer }
        guard let moved = allocate(size) else { return nil }
        moved.copyMemory(from: pointer, byteCount: min(old, size))
        deallocate(pointer)
        return moved
    }
}

private func allocator(_ user: UnsafeMutableRawPointer?) -> H2Allocator {
    // Safe because nghttp2 passes back the `mem_user_data` set in `H2Allocator.init`.
    Unmanaged<H2Allocator>.fromOpaque(user.unsafelyUnwrapped).takeUnretainedValue()
}
