#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

public enum MappedFileError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case cannotMap(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .cannotMap(path, reason): return "\(path): cannot map: \(reason)"
        }
    }
}

/// A whole file mapped into memory, private and copy-on-write: views may be written to
/// without touching the file, and untouched pages cost no memory beyond the page cache.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeMutableRawPointer?
    public let byteCount: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw MappedFileError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw MappedFileError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw MappedFileError.cannotOpen(path: path, reason: "is a directory") }
        byteCount = Int(st.st_size)
        if byteCount == 0 {
            base = nil
            return
        }
        let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw MappedFileError.cannotMap(path: path, reason: String(cString: strerror(errno)))
        }
        base = p
    }

    deinit { if let base { munmap(base, byteCount) } }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: byteCount) }

    /// Drops the pages lying wholly inside `range` from this process's memory (MADV_DONTNEED):
    /// for data copied elsewhere and not read again. Unwritten private pages read back from the
    /// file if touched later, so nothing is lost; a page shared with data outside the range stays.
    public func release(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page, end = range.upperBound / page * page
        if end > start { madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// Hints that the range will be read soon (sequential streaming of a checkpoint).
    public func willNeed(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        madvise(base + start, range.upperBound - start, MADV_WILLNEED)
    }
}
