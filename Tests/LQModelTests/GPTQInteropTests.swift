import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// GPTQ checkpoints (AutoGPTQ's v1 layout) against the Hugging Face stack, both ways
/// (scripts/make-gptq-interop-fixtures.py).
///
/// Oracle: transformers 5.24.0 + optimum 2.3.0 + GPTQModel 7.7.0 on CPU (torch 2.13.0+cpu), every
/// quantized linear GPTQModel's pure-torch TorchLinear (backend gptq_torch). Checkpoints of the tiny
/// Llama Tests/LQCLITests/Fixtures/mha written by lqlora (GPTQ 4-bit groups of 32; 3-bit groups of
/// 32 with act-order and zero points; RTN 8-bit one group per row) and by GPTQModel's own
/// quantize() on CPU (4-bit groups of 32; 3-bit act-order asymmetric), so the loader also reads
/// files it did not write. LlamaModel(directory:) loads each and its logits on the fixture's ids
/// are compared with transformers':
/// - `logits`: GPTQModel's scales cast to fp32 after loading, so its dequantized weight
///   scale·(code − zero) is exact in fp32 as lqlora's is: the same weights, 1e-4 as for the dense
///   models (LlamaTests);
/// - `logits_fp16_scales`: GPTQModel as it runs by default, the product rounded to fp16 (relative
///   error up to 2⁻¹¹ per weight) before its fp32 matmul; the fixture measured up to 1.5e-3 between
///   the two, so 4e-3 here.
///
/// And SmolLM2-135M-Instruct (where models/ has it) quantized by lqlora, GPTQ 4-bit in groups of 64
/// on 4 wikitext windows of 256 tokens, against the same stack on one sequence of 32 ids
/// (scripts/make-gptq-interop-fixtures.py --smollm2; the checkpoint is not committed, the test makes
/// it again and first checks it is the one the oracle saw, tensor by tensor): logits within 2e-4
/// (measured 8.7e-5, logits up to 32 in size, 30 layers) and the same greedy token at every position.
struct GPTQInteropTests {
    static let dir = modelFixtures + "/gptq-interop"
    static let oracle = try! SafeTensorsFile(path: dir + "/logits.safetensors")
    static let variants = ["lqlora-gptq-4bit-g32", "lqlora-gptq-3bit-g32-act-asym", "lqlora-rtn-8bit-rows",
                           "made-by-gptqmodel/gptq-4bit-g32", "made-by-gptqmodel/gptq-3bit-g32-act-asym"]

    static func ids() throws -> [[Int]] {
        let t = try oracle.floatTensor("input_ids")
        return (0..<t.shape[0]).map { r in (0..<t.shape[1]).map { Int(t[r, $0]) } }
    }

    @Test(arguments: variants)
    func logitsMatchTransformersWithGPTQModel(variant: String) throws {
        let model = try LlamaModel(directory: Self.dir + "/" + variant)
        let got = model.forward(try Self.ids())
        let exact = try Self.oracle.floatTensor(variant + ".logits")
        #expect(got.count == exact.count)
        let diff = LlamaTests.maxDiff(got, exact)
        #expect(diff <= 1e-4, "\(variant): max |Δlogit| = \(diff) against fp32 scales")
        let stock = LlamaTests.maxDiff(got, try Self.oracle.floatTensor(variant + ".logits_fp16_scales"))
        #expect(stock <= 4e-3, "\(variant): max |Δlogit| = \(stock) against GPTQModel's fp16 dequantization")
    }

    @Test func theCheckpointsAreTheVariantsNamed() throws {
        // Each fixture is what its name says, so the cases above cover what they claim.
        let expect: [String: (bits: Int, group: Int?, act: Bool, sym: Bool)] = [
            "lqlora-gptq-4bit-g32": (4, 32, false, true), "lqlora-gptq-3bit-g32-act-asym": (3, 32, true, false),
            "lqlora-rtn-8bit-rows": (8, nil, false, true), "made-by-gptqmodel/gptq-4bit-g32": (4, 32, false, true),
            "made-by-gptqmodel/gptq-3bit-g32-act-asym": (3, 32, true, false),
        ]
        for variant in Self.variants {
            let data = try Data(contentsOf: URL(fileURLWithPath: Self.dir + "/" + variant + "/config.json"))
            let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            let s = try #require(try GPTQFormat.Settings(modelConfig: json, path: variant))
            let e = try #require(expect[variant])
            #expect(s.bits == e.bits && s.groupSize == e.group && s.descAct == e.act && s.symmetric == e.sym, "\(variant): \(s)")
        }
    }

    /// Sum of the little-endian uint32 words of a tensor's bytes, mod 2⁶⁴ (the fixture script's word_sum).
    static func wordSum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var sum: UInt64 = 0
        for i in stride(from: 0, to: bytes.count - 3, by: 4) { sum &+= UInt64(bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self)) }
        return sum
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil, "SmolLM2 not converted: run scripts/fetch-smollm2.sh"))
    func smolLM2GPTQCheckpointMatchesTransformersWithGPTQModel() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.dir + "/smollm2-gptq-4bit-g64.json"))
        let f = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let ids = f["input_ids"] as! [Int], slice = f["vocab_slice"] as! Int
        let sums = f["word_sums"] as! [String: String]
        let oracle = try SafeTensorsFile(path: Self.dir + "/smollm2-gptq-4bit-g64.safetensors")
        let dir = NSTemporaryDirectory() + "lqlora-smol-gptq-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try BuiltCommand.run(["quantize", "--model", RealModel.smolLM2, "--method", "gptq", "--bits", "4", "--group-size", "64",
                                      "--calib", RealModel.root + "/data/wikitext-2-raw-test.txt", "--samples", "4", "--seq-len", "256",
                                      "--out", dir])
        try #require(r.status == 0, "lqlora quantize: \(r.stderr)")
        let checkpoint = try SafeTensorsFile(path: dir + "/model.safetensors")
        let quantized = checkpoint.tensorNames.filter { ["qweight", "qzeros", "scales"].contains($0.split(separator: ".").last.map(String.init) ?? "") }
        #expect(Set(quantized) == Set(sums.keys))
        let differing = try sums.keys.sorted().filter { name in
            Self.wordSum(checkpoint.bytes(of: try checkpoint.entry(name))) != UInt64(sums[name]!)!
        }
        try #require(differing.isEmpty, "the checkpoint is not the one transformers saw: \(differing.prefix(5)) (\(differing.count) tensors)")

        let got = try LlamaModel(directory: dir).forward([ids])  // [32, vocab]
        let vocab = got.count / ids.count
        let head = try oracle.floatTensor("logits_head"), last = try oracle.floatTensor("logits_last")
        let argmax = try oracle.floatTensor("argmax")
        var worst: Float = 0, flips = 0
        for t in 0..<ids.count {
            for v in 0..<slice { worst = max(worst, abs(got[t, v] - head[t, v])) }
            var best = 0
            for v in 0..<vocab where got[t, v] > got[t, best] { best = v }
            if best != Int(argmax.pointer[t]) { flips += 1 }
        }
        for v in 0..<vocab { worst = max(worst, abs(got[ids.count - 1, v] - last.pointer[v])) }
        // Measured 8.7e-5 on logits up to 32 in size: the same weights, fp32 summed in other orders over
        // 30 layers (relative 3e-6); 2e-4 leaves room for that and none for a wrong code or scale.
        #expect(worst <= 2e-4, "SmolLM2 GPTQ: max |Δlogit| = \(worst)")
        #expect(flips == 0, "SmolLM2 GPTQ: \(flips) of \(ids.count) greedy tokens differ")
    }
}
