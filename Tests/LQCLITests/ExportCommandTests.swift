import Foundation
import LQFormats
import LQTestSupport
import Testing

/// `lqlora export` as a user runs it: the file reads back, bad requests are named, a killed export
/// leaves no file. (What the file holds is checked against llama.cpp in GGUFExportTests.)
struct ExportCommandTests {
    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "lqlora-export-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// F32 out and back through convert --from-gguf: every tensor bit for bit.
    @Test(builtBinary)
    func exportReadsBackThroughConvert() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = try CLI.succeed(["export", "--model", CLI.model, "--out", dir + "/m.gguf", "--type", "f32"])
        #expect(out.contains("exported 21 tensors (F32: 21 F32)"), "\(out)")
        _ = try CLI.succeed(["convert", "--from-gguf", dir + "/m.gguf", "--out", dir + "/back", "--dtype", "f32"])
        let original = try SafeTensorsFile(path: CLI.model + "/model.safetensors"), back = try SafeTensorsFile(path: dir + "/back/model.safetensors")
        #expect(Set(original.tensorNames) == Set(back.tensorNames))
        for name in original.tensorNames {
            #expect(try original.floatTensor(name).array == back.floatTensor(name).array, "\(name)")
        }
    }

    @Test(builtBinary)
    func badRequestsAreNamed() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try CLI.run(["export", "--model", CLI.model, "--out", dir + "/a.gguf", "--merge"])
        #expect(merge.status == 1 && merge.stderr.contains("--merge needs --adapter"), "\(merge.stderr)")
        let loose = try CLI.run(["export", "--model", CLI.model, "--adapter", CLI.adapter, "--out", dir + "/b.gguf"])
        #expect(loose.status == 1 && loose.stderr.contains("--adapter-only"), "\(loose.stderr)")
        let type = try CLI.run(["export", "--model", CLI.model, "--out", dir + "/c.gguf", "--type", "q3_k"])
        #expect(type.status == 64 && type.stderr.contains("q4_k"), "\(type.stderr)")
        // The mha fixture's rows (64 values) are not whole K-quant super-blocks: llama.cpp's fallbacks.
        let k = try CLI.succeed(["export", "--model", CLI.model, "--out", dir + "/d.gguf", "--type", "q4_k"])
        #expect(k.contains("Q5_0") && !k.contains("Q4_K,") && !k.contains(" Q4_K)"), "\(k)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["d.gguf"])
    }

    /// Killed part-way: no file at --out; the next export removes the killed one's temporary file.
    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil, "SmolLM2 not converted: run scripts/fetch-smollm2.sh"))
    func killedExportLeavesNoFile() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/smol.gguf"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: BuiltCommand.path!)
        p.arguments = ["export", "--model", RealModel.smolLM2, "--out", out, "--type", "q4_k"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until it is writing (its temporary file exists), then kill it.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).contains(where: { $0.contains(".tmp-") }) {
            usleep(20_000)
        }
        usleep(300_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(!FileManager.default.fileExists(atPath: out))
        _ = try CLI.succeed(["export", "--model", RealModel.smolLM2, "--out", out, "--type", "f16"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["smol.gguf"])
        #expect(try GGUFFile(path: out).tensors.count == 272)
    }
}
