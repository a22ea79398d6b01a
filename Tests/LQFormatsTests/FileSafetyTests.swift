import Foundation
import LQFormats
import LQTensor
import Testing

/// The file-system pieces every writer shares: plain-word errors, the output lock, directory swaps.
struct FileSafetyTests {
    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "lqlora-files-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func foundationFileErrorsAreSaidInPlainWordsWithThePath() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The error a user met when output_dir was a file (NSCocoaErrorDomain Code=516).
        try Data().write(to: URL(fileURLWithPath: dir + "/run"))
        let exists = #expect(throws: (any Error).self) { try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true) }
        #expect(FileSystemFailure.describe(exists!) == "\(dir)/run: a file or directory of that name already exists")
        let missing = #expect(throws: (any Error).self) { try FileManager.default.copyItem(atPath: dir + "/absent.json", toPath: dir + "/b.json") }
        #expect(FileSystemFailure.describe(missing!).hasSuffix("absent.json: no such file or directory"))
        // A full disk while copying tokenizer.json (Code=640), as Foundation reports it.
        let full = CocoaError(.fileWriteOutOfSpace, userInfo: [NSFilePathErrorKey: "/out/tokenizer.json"])
        #expect(FileSystemFailure.describe(full) == "/out/tokenizer.json: no space left on the device")
        struct Other: Error, CustomStringConvertible { var description: String { "left as it is" } }
        #expect(FileSystemFailure.describe(Other()) == "left as it is")
    }

    @Test func theOutputLockExcludesASecondHolderUntilReleased() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try OutputLock(for: dir + "/out")
        #expect(throws: OutputLockError.busy(path: dir + "/out", pid: getpid())) { _ = try OutputLock(for: dir + "/out") }
        // The refused attempt left the holder's lock file in place.
        #expect(FileManager.default.fileExists(atPath: dir + "/.out.lock"))
        first.release()
        #expect(!FileManager.default.fileExists(atPath: dir + "/.out.lock"))
        let second = try OutputLock(for: dir + "/out")
        second.release()
    }

    @Test func aDirectoryReplacementLeavesTheNewOneAndNothingElse() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        for (name, content) in [("old", "1"), ("new", "2")] {
            try fm.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
            try Data(content.utf8).write(to: URL(fileURLWithPath: dir + "/\(name)/f"))
        }
        try AtomicDirectory.replace(dir + "/old", with: dir + "/new")
        #expect(try fm.contentsOfDirectory(atPath: dir) == ["old"])
        #expect(try String(contentsOfFile: dir + "/old/f", encoding: .utf8) == "2")
        try fm.createDirectory(atPath: dir + "/staged", withIntermediateDirectories: true)
        try AtomicDirectory.replace(dir + "/fresh", with: dir + "/staged")
        #expect(try fm.contentsOfDirectory(atPath: dir).sorted() == ["fresh", "old"])
    }
}

/// Tensors spilled to a scratch file while a checkpoint is assembled come back byte for byte: the
/// file written from them equals the one written from the tensors in memory, and removing the
/// spill leaves nothing behind.
struct SpillFileTests {
    @Test func spilledTensorsWriteTheSameFile() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let codes = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let floats = Tensor(shape: [50, 20], values: (0..<1_000).map { Float($0) * 0.25 - 7 })
        let tensors = [PendingTensor(name: "w", dtype: .u8, shape: [5_000], bytes: codes), PendingTensor(name: "s", tensor: floats),
                       PendingTensor(name: "tiny", dtype: .u8, shape: [3], bytes: [1, 2, 3])]
        try SafeTensorsWriter.write(tensors, to: dir.file("memory.safetensors"))
        let spill = try SpillFile(directory: dir.path, threshold: 16)
        let spilled = try tensors.map { try spill.spilled($0) }
        try SafeTensorsWriter.write(spilled, to: dir.file("spilled.safetensors"))
        #expect(FileManager.default.fileExists(atPath: spill.path))
        spill.remove()
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("memory.safetensors"))) == Data(contentsOf: URL(fileURLWithPath: dir.file("spilled.safetensors"))))
        #expect(dir.contents() == ["memory.safetensors", "spilled.safetensors"])
    }
}
