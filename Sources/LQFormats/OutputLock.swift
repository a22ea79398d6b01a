#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Why an output path cannot be claimed.
public enum OutputLockError: Error, CustomStringConvertible, Equatable {
    /// Another live process holds the lock; `pid` is what it wrote into the lock file (0 if unknown).
    case busy(path: String, pid: Int32)
    case cannotLock(path: String, reason: String)

    public var description: String {
        switch self {
        case let .busy(path, pid):
            return "another lqlora run\(pid > 0 ? " (pid \(pid))" : "") is writing \(path): wait for it to finish or choose another output"
        case let .cannotLock(path, reason): return "cannot lock \(path): \(reason)"
        }
    }
}

/// An exclusive claim on an output path for the life of one run: `flock` on a lock file beside it
/// (`.NAME.lock`), so that two runs writing the same output cannot both succeed and silently
/// replace each other's result. The kernel drops the lock when the process dies, so a killed run
/// never blocks the next; its lock file is reused and removed by the next run that finishes.
public final class OutputLock {
    public let path: String
    public let lockPath: String
    private var fd: Int32

    /// Takes the lock or throws `.busy` at once (never waits).
    public init(for path: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        self.path = url.path
        let parent = url.deletingLastPathComponent().path
        lockPath = parent + "/" + Self.lockName(url.lastPathComponent)
        // The output's parent is made as the output would make it (e.g. --out runs/new/q).
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            fd = -1
            throw OutputLockError.cannotLock(path: self.path, reason: FileSystemFailure.describe(error))
        }
        // A lock file removed by its finishing owner between our open and flock is a stale inode:
        // locking it excludes nobody, so retry until the locked file is the one at the path.
        while true {
            fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if fd < 0 { fd = -1; throw OutputLockError.cannotLock(path: self.path, reason: String(cString: strerror(errno))) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let busy = errno == EWOULDBLOCK
                let reason = String(cString: strerror(errno))
                let holder = Self.readPID(fd)
                close(fd)
                fd = -1  // deinit runs for a class whose init throws: it must not remove the holder's file
                if busy { throw OutputLockError.busy(path: self.path, pid: holder) }
                throw OutputLockError.cannotLock(path: self.path, reason: reason)
            }
            var held = stat(), named = stat()
            if fstat(fd, &held) == 0, stat(lockPath, &named) == 0, held.st_ino == named.st_ino, held.st_dev == named.st_dev { break }
            close(fd)
        }
        let pid = Data("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { release() }

    public static func lockName(_ name: String) -> String { ".\(name).lock" }

    /// Removes the lock file and drops the lock (removing first, while still holding it, so no other
    /// run can have locked the file being removed).
    public func release() {
        guard fd >= 0 else { return }
        unlink(lockPath)
        close(fd)
        fd = -1
    }

    private static func readPID(_ fd: Int32) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return 0 }
        return Int32(String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
}
