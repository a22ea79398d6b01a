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
}
