import CKernels
import Foundation
import LQFormats
import LQQuant

/// An output model directory written as a whole: everything goes into a staging directory beside
/// the destination, which replaces it only when complete, in one step (the two paths are
/// exchanged), so the destination holds the complete old or the complete new output at every
/// instant. A failed run removes its staging directory; a killed one leaves it, and the next run
/// for the same destination removes it.
struct StagedDirectory {
    let destination: String
    let staging: String

    /// Fails if `destination` exists and is not empty, unless `overwrite`.
    init(destination: String, overwrite: Bool) throws {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: destination).standardizedFileURL
        self.destination = url.path
        if fm.fileExists(atPath: self.destination), !overwrite,
           !((try? fm.contentsOfDirectory(atPath: self.destination))?.isEmpty ?? false) {
            throw CLIError("\(self.destination) already exists and is not empty (use --overwrite to replace it)")
        }
        let parent = url.deletingLastPathComponent().path
        Self.removeStale(in: parent, name: url.lastPathComponent)
        staging = parent + "/" + Self.stagingPrefix(url.lastPathComponent) + "\(getpid())"
        try? fm.removeItem(atPath: staging)
        do { try fm.createDirectory(atPath: staging, withIntermediateDirectories: true) } catch {
            throw CLIError("cannot create \(staging) beside the output: \(error.localizedDescription)")
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

    /// Puts the staging directory in place of the destination.
    func commit() throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: destination) else {
            do { try fm.moveItem(atPath: staging, toPath: destination) } catch {
                throw CLIError("cannot move \(staging) to \(destination): \(error.localizedDescription)")
            }
            return
        }
        // One step: the new output takes the destination, the old one the staging path, then goes.
        if lq_exchange_paths(staging, destination) == 0 {
            try? fm.removeItem(atPath: staging)
            return
        }
        // A file system that cannot exchange: the old output aside, the new one in, the old one deleted.
        let aside = staging + "-old"
        do {
            try fm.moveItem(atPath: destination, toPath: aside)
            try fm.moveItem(atPath: staging, toPath: destination)
        } catch {
            throw CLIError("cannot replace \(destination) with \(staging): \(error.localizedDescription)")
        }
        try? fm.removeItem(atPath: aside)
    }

    func abandon() { try? FileManager.default.removeItem(atPath: staging) }
}

/// A user-facing error: one line, no stack of types.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
