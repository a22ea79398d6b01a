import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// `lqlora quantize --method lq-lora` end to end on the tiny Llama fixture.
struct LQLoRACommandTests {
    static let tiny = CLI.root + "/Tests/LQModelTests/Fixtures/llama/mha"

    func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { maxAbsDifference(a, b) }

    @Test(builtBinary)
    func lqloraModelWithItsAdapterIsCloserThanTheQuantizedBase() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("lq")
        let r = try CLI.run(["quantize", "--model", Self.tiny, "--out", out, "--method", "lq-lora", "--budget", "2.5",
                                          "--rank", "8", "--grid", "compact", "--ilp-cache", dir.file("cache.json")])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/quant_report.json"))) as! [String: Any]
        #expect((report["average_bits"] as! Double) <= 2.5)
        #expect((report["solver"] as! [String: Any])["status"] as? String == "optimal")
        for m in report["matrices"] as! [[String: Any]] {
            #expect((m["error"] as! Double) < (m["error_quantization_only"] as! Double), "\(m["name"]!)")
        }

        let ids = [[Int](0..<24).map { ($0 * 37) % 128 }]
        let dense = try LlamaModel(directory: Self.tiny).forward(ids)
        let base = try LlamaModel(directory: out)
        let withoutAdapter = maxDiff(base.forward(ids), dense)
        try base.loadAdapter(directory: out + "/adapter")
        let withAdapter = maxDiff(base.forward(ids), dense)
        #expect(withAdapter < withoutAdapter, "adapter \(withAdapter) vs none \(withoutAdapter)")

        // Folding the adapter into a dense copy gives the same model.
        let merged = dir.file("merged")
        let m = try CLI.run(["merge", "--model", out, "--adapter", out + "/adapter", "--out", merged, "--dtype", "f32"])
        #expect(m.status == 0, "\(m.stderr)")
        let mergedDiff = maxDiff(try LlamaModel(directory: merged).forward(ids), base.forward(ids))
        #expect(mergedDiff <= 1e-4, "merged vs base + adapter: \(mergedDiff)")

        // A second budget reuses the cached error table.
        let again = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("lq3"), "--method", "lq-lora", "--budget", "3.0",
                                              "--rank", "8", "--grid", "compact", "--ilp-cache", dir.file("cache.json")])
        #expect(again.status == 0)
        let report3 = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("lq3") + "/quant_report.json"))) as! [String: Any]
        let table3 = report3["error_table"] as! [String: Any]
        #expect(table3["from_cache"] as? Int == 14 && table3["matrices"] as? Int == 14, "\(table3)")
        #expect((report["error_table"] as! [String: Any])["from_cache"] as? Int == 0)

        let low = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("x"), "--method", "lq-lora", "--budget", "1.5"])
        #expect(low.status != 0 && low.stderr.contains("below the cheapest"))
        let rank = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("y"), "--method", "lq-lora", "--budget", "3", "--rank", "64"])
        #expect(rank.status == 1 && rank.stderr.contains("--rank 64"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("x")) && !FileManager.default.fileExists(atPath: dir.file("y")))
    }

    /// An option the chosen method would ignore is refused, naming it, before anything is read.
    @Test(builtBinary)
    func optionsThatDoNotApplyAreRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        for (arguments, named) in [(["--budget", "3"], "--budget does not apply to --method nf4"),
                                   (["--method", "qlora-ilp", "--budget", "3", "--rank", "8"], "--rank does not apply to --method qlora-ilp"),
                                   (["--method", "lq-lora", "--budget", "3", "--block-size", "32"], "--block-size does not apply to --method lq-lora"),
                                   (["--method", "nf3", "--no-double-quant", "--svd", "full"], "--svd does not apply to --method nf3"),
                                   (["--config", "nf3-b64-s8g256-fp32", "--method", "nf3"], "drop --method nf3"),
                                   (["--method", "nf5"], "'nf5' is invalid for '--method")] {
            let r = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("q")] + arguments)
            #expect(r.status == 64 && r.stderr.contains(named), "\(arguments): \(r.stderr)")
        }
        #expect(dir.contents().isEmpty)
    }

    /// A cache is valid only for the weights, options and code that made it.
    @Test(builtBinary)
    func errorTableCacheRefusesAnotherModelAndOlderCode() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let cache = dir.file("cache.json")
        func quantize(_ model: String, _ out: String, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
            try CLI.run(["quantize", "--model", model, "--out", dir.file(out), "--method", "qlora-ilp", "--budget", "3",
                                      "--grid", "compact", "--ilp-cache", cache] + extra)
        }
        #expect(try quantize(Self.tiny, "a").status == 0)

        // The same tensor names with other weights: a copy of the model with one matrix changed.
        let other = dir.file("other")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: Self.tiny + "/" + f, toPath: other + "/" + f) }
        let offset = try { () throws -> UInt64 in
            let file = try SafeTensorsFile(path: other + "/model.safetensors")
            return UInt64(file.dataStart + (try file.entry("model.layers.1.mlp.up_proj.weight")).dataRange.lowerBound)
        }()
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: other + "/model.safetensors"))
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([0, 0, 0x80, 0x3F]))  // the first weight becomes 1.0
        try handle.close()
        let refused = try quantize(other, "b")
        #expect(refused.status == 1 && refused.stderr.contains("model.layers.1.mlp.up_proj.weight") && refused.stderr.contains("another model"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("b")))

        // Other options are another table, not a hit.
        #expect(try quantize(Self.tiny, "c", ["--method", "lq-lora", "--rank", "4"]).status == 0)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("c") + "/quant_report.json"))) as! [String: Any]
        #expect((report["error_table"] as! [String: Any])["from_cache"] as? Int == 0)

        // A cache without the code version (as lqlora wrote them before) is refused, not reused.
        try Data(#"{"qlora-ilp rank 0 fisher none": {"model.layers.0.self_attn.q_proj.weight": {"nf2-b64-s8g256-bf16": 1.0}}}"#.utf8)
            .write(to: URL(fileURLWithPath: cache))
        let old = try quantize(Self.tiny, "d")
        #expect(old.status == 1 && old.stderr.contains("older lqlora"), "\(old.stderr)")
    }

    /// The PEFT fixture adapter merged into its dense base reproduces PEFT's logits.
    @Test(builtBinary)
    func mergedPEFTAdapterMatchesPEFT() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let merged = dir.file("merged")
        let r = try CLI.run(["merge", "--model", Self.tiny, "--adapter", Self.tiny + "/adapter", "--out", merged, "--dtype", "f32"])
        #expect(r.status == 0, "\(r.stderr)")
        let expected = try SafeTensorsFile(path: Self.tiny + "/expected.safetensors")
        let idsTensor = try expected.floatTensor("input_ids")
        let ids = (0..<2).map { b in (0..<24).map { Int(idsTensor[b, $0]) } }
        let diff = maxDiff(try LlamaModel(directory: merged).forward(ids), try expected.floatTensor("logits_adapter"))
        #expect(diff <= 1e-4, "merged vs PEFT: \(diff)")
    }
}
