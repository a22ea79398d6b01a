#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels
import Foundation

/// Writes a file through a temporary sibling that is renamed into place only after every byte
/// is written and synced: a killed run leaves the old file (or none), never a torn one.
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var finished = false

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        temporaryPath = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw SafeTensorsError.writeFailed(path: path, reason: String(cString: strerror(errno))) }
    }

    deinit { if !finished { abandon() } }

    /// Removes the temporary siblings of `path` that killed runs left (their process is gone).
    public static func removeStale(for path: String) {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path, prefix = ".\(url.lastPathComponent).tmp-"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count).prefix(while: \.isNumber)), pid != getpid(), lq_process_alive(pid) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: dir + "/" + entry)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
            p += n
            left -= n
        }
    }

    public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }

    /// Syncs, closes and renames the temporary file into place.
    public func commit() throws {
        precondition(!finished, "commit twice")
        finished = true
        if fsync(fd) != 0 || close(fd) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw SafeTensorsError.writeFailed(path: path, reason: reason)
        }
        if rename(temporaryPath, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw SafeTensorsError.writeFailed(path: path, reason: reason)
        }
    }

    /// Removes the temporary file; the destination is untouched.
    public func abandon() {
        if finished { return }
        finished = true
        close(fd)
        unlink(temporaryPath)
    }
}

extension Data {
    /// Writes the data to `path` atomically (temporary file, fsync, rename).
    public func writeAtomically(to path: String) throws {
        let w = try AtomicFileWriter(path: path)
        try w.write(self)
        try w.commit()
    }
}

/// Directories put in place whole.
public enum AtomicDirectory {
    /// Puts the complete directory `staged` at `destination`: when one is there, the two are
    /// exchanged in one step (renameat2) and the old one deleted, so the path holds the complete old
    /// or the complete new directory at every instant; where the file system cannot exchange, the
    /// old one is renamed aside first (the instant between the two renames has neither).
    public static func replace(_ destination: String, with staged: String) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: destination) else {
            return try fm.moveItem(atPath: staged, toPath: destination)
        }
        if lq_exchange_paths(staged, destination) == 0 {
            try? fm.removeItem(atPath: staged)
            return
        }
        let aside = staged + "-old"
        try fm.moveItem(atPath: destination, toPath: aside)
        try fm.moveItem(atPath: staged, toPath: destination)
        try? fm.removeItem(atPath: aside)
    }
}
