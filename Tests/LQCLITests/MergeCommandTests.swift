import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// `lqlora merge` on a quantized base against PEFT's merge_and_unload of the adapter onto the
/// bitsandbytes-dequantized weights (scripts/make-cli-fixtures.py).
struct MergeCommandTests {
    @Test(builtBinary)
    func mergeOnAnNF4BaseMatchesPEFT() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let q = dir.file("q"), merged = dir.file("merged")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q, "--method", "nf4"])
        let out = try CLI.succeed(["merge", "--model", q, "--adapter", CLI.adapter, "--out", merged, "--dtype", "f32"])
        let scale = (CLI.oracles["merge"] as! [String: Any])["scale"] as! Double
        #expect(out.contains("merged 14 adapted weights (scale \(Float(scale)))"), "\(out)")

        let oracle = try CLI.tensors()
        let checkpoint = try Checkpoint(path: merged)
        let weight = try checkpoint.floatTensor("model.layers.0.self_attn.q_proj.weight")
        let wDiff = maxAbsDifference(weight, try oracle.floatTensor("merge.q_proj"))
        #expect(wDiff <= 1e-6, "merged q_proj: max |Δ| \(wDiff) from PEFT's")
        let config = try CLI.jsonFile(merged + "/config.json")
        #expect(config["torch_dtype"] as? String == "float32" && config["quantization_config"] == nil)

        let ids = try oracle.floatTensor("merge.input_ids")
        let rows = (0..<ids.shape[0]).map { b in (0..<ids.shape[1]).map { Int(ids.pointer[b * ids.shape[1] + $0]) } }
        let logits = try LlamaModel(directory: merged).forward(rows)
        let expected = try oracle.floatTensor("merge.logits")
        let diff = maxAbsDifference(logits, expected)
        #expect(diff <= 1e-4, "merged logits: max |Δ| \(diff) from PEFT's merge_and_unload")
        // The adapter matters at this tolerance: the quantized base alone is far off.
        let baseDiff = maxAbsDifference(try LlamaModel(directory: q).forward(rows), expected)
        #expect(baseDiff > 1e-2, "base without the adapter: \(baseDiff)")
    }
}
