import CKernels
import Foundation
import LQFormats
import LQQuant

/// An output model directory written as a whole: everything goes into a staging directory beside
/// the destination, which replaces it only when complete, in one step (the two paths are
/// exchanged), so the destination holds the complete old or the complete new output at every
/// instant. A failed run removes its staging directory; a killed one leaves it, and the next run
/// for the same destination removes it. The destination is locked for the run: a second run
/// writing the same output is refused while the first is alive.
struct StagedDirectory {
    let destination: String
    let staging: String
    private let lock: OutputLock

    /// Fails if another run holds the destination, if it is a file, or if it exists and is not
    /// empty, unless `overwrite`.
    init(destination: String, overwrite: Bool) throws {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: destination).standardizedFileURL
        self.destination = url.path
        // A throw below drops the lock with this value (OutputLock releases itself in deinit).
        lock = try OutputLock(for: self.destination)
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: self.destination, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw CLIError("\(self.destination) is a file; the output is a directory (choose another path)")
            }
            if !overwrite, !((try? fm.contentsOfDirectory(atPath: self.destination))?.isEmpty ?? false) {
                throw CLIError("\(self.destination) already exists and is not empty (use --overwrite to replace it)")
            }
        }
        let parent = url.deletingLastPathComponent().path
        Self.removeStale(in: parent, name: url.lastPathComponent)
        staging = parent + "/" + Self.stagingPrefix(url.lastPathComponent) + "\(getpid())"
        try? fm.removeItem(atPath: staging)
        do { try fm.createDirectory(atPath: staging, withIntermediateDirectories: true) } catch {
            throw CLIError("cannot create \(staging) beside the output: \(FileSystemFailure.reason(error))")
        }
    }

    static func stagingPrefix(_ name: String) -> String { ".\(name).partial-" }

    /// Staging directories for `name` whose process is gone (a killed run's, or an old output a
    /// killed run had swapped out but not yet deleted).
    static func removeStale(in parent: String, name: String) {
        let prefix = stagingPrefix(name)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count).prefix(while: \.isNumber)), pid != getpid(), lq_process_alive(pid) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: parent + "/" + entry)
        }
    }

    func path(_ name: String) -> String { staging + "/" + name }

    /// Puts the staging directory in place of the destination and releases the lock.
    func commit() throws {
        defer { lock.release() }
        do { try AtomicDirectory.replace(destination, with: staging) } catch {
            throw CLIError("cannot put \(staging) in place of \(destination): \(FileSystemFailure.reason(error))")
        }
    }

    func abandon() {
        try? FileManager.default.removeItem(atPath: staging)
        lock.release()
    }
}

/// A user-facing error: one line, no stack of types.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
