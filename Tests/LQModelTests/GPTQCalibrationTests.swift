import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// GPTQ over a whole model against AutoGPTQ's layer-by-layer loop run in torch on the same tiny
/// Llama 3 model and calibration ids (scripts/make-gptq-model-fixture.py): each group's Hessian
/// from inputs that passed through the quantized earlier layers and groups; "static": act-order
/// with static groups; "flat": true_sequential false (all seven from the unquantized block's inputs).
struct GPTQCalibrationTests {
    static let oracle = try! SafeTensorsFile(path: modelFixtures + "/oracles/gptq-gqa_llama3.safetensors")

    @Test(arguments: ["order", "act", "static", "flat"])
    func everyProjectionMatchesAutoGPTQsLayerSequentialRun(order: String) throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3")
        let ids = try Self.oracle.floatTensor("calibration_ids")
        let samples = (0..<ids.shape[0]).map { r in (0..<ids.shape[1]).map { Int(ids[r, $0]) } }
        let options = GPTQ.Options(bits: 4, groupSize: 32, symmetric: true, actOrder: order == "act" || order == "static", damp: 0.1,
                                   staticGroups: order == "static")
        var blocks = 0
        let results = try GPTQCalibration.quantize(model, samples: samples, options: options, trueSequential: order != "flat") {
            if case .block = $0 { blocks += 1 }
        }
        #expect(blocks == 2 && results.count == 14)
        var flips = 0, codes = 0
        for r in results {
            let key = order + "." + r.site.module
            let expected = try Self.oracle.floatTensor(key + ".codes")
            #expect(r.quantization.groupIndex.map(Float.init) == (try Self.oracle.floatTensor(key + ".g_idx")).array, "\(key): g_idx")
            for i in 0..<expected.count where Float(r.quantization.codes[i]) != expected.pointer[i] { flips += 1 }
            codes += expected.count
            let scales = try Self.oracle.floatTensor(key + ".scale")
            // Ours are stored in fp16: within half an fp16 ulp of the reference's fp32 scales (or a flip's worth).
            var worst: Float = 0
            for i in 0..<scales.count { worst = max(worst, abs(r.quantization.scales[i] - scales.pointer[i]) / scales.pointer[i]) }
            #expect(worst <= 1e-3, "\(key): scales within \(worst)")
            #expect(model.layers[0][.q] is UniformLinear)
        }
        #expect(flips * 200 <= codes, "\(flips) of \(codes) codes differ from AutoGPTQ's")
        let logits = model.forward(samples)
        let expected = try Self.oracle.floatTensor(order + ".logits")
        let scale = (0..<expected.count).reduce(Float(0)) { max($0, abs(expected.pointer[$1])) }
        let diff = maxAbsDifference(logits, expected.reshaped([samples.count * 24, 128]))
        #expect(diff <= 2e-3 * scale, "max |Δlogit| \(diff) (logits up to \(scale)); \(flips) flipped codes")
        print("GPTQ \(order): \(flips) of \(codes) codes differ; max |Δlogit| \(diff) of \(scale)")
    }

    /// Decoding an act-order model takes the g_idx GEMV (a few rows), a whole sequence the panel
    /// path (dequantized panels into sgemm): token-by-token logits with the cache equal the full pass's.
    @Test func decodingAnActOrderModelThroughTheGIdxGEMVMatchesThePanelPath() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3")
        let ids = try Self.oracle.floatTensor("calibration_ids")
        let samples = (0..<ids.shape[0]).map { r in (0..<ids.shape[1]).map { Int(ids[r, $0]) } }
        _ = try GPTQCalibration.quantize(model, samples: samples, options: GPTQ.Options(bits: 4, groupSize: 32, actOrder: true))
        let q = try #require(model.layers[0][.q] as? UniformLinear)
        #expect(!q.weight.sequentialGroups, "act-order permutes the groups")
        let prompts = Array(samples[0..<2])
        let full = model.forward(prompts)  // 48 rows: the panel path
        let cache = KVCache(config: model.config, batch: 2, capacity: 32)
        _ = model.forward(prompts.map { Array($0[0..<4]) }, cache: cache)
        var worst: Float = 0, scale: Float = 0
        for t in 4..<24 {
            let step = model.forward(prompts.map { [$0[t]] }, cache: cache)  // 2 rows: the GEMV
            for b in 0..<2 {
                for v in 0..<128 {
                    let e = full[b * 24 + t, v]
                    worst = max(worst, abs(step[b, v] - e))
                    scale = max(scale, abs(e))
                }
            }
        }
        #expect(worst <= 1e-5 * max(scale, 1), "max |Δlogit| decoding through the g_idx GEMV = \(worst) (logits up to \(scale))")
    }

    /// A weight holding NaN is refused by name, by GPTQ and by round-to-nearest (a code is a byte).
    @Test func nonFiniteWeightsAreRefusedByName() throws {
        for gptq in [true, false] {
            let model = try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3")
            let w = model.layers[1][.up].denseWeight()
            w.pointer[5] = .nan
            model.layers[1][.up] = DenseLinear(weight: w)
            let options = GPTQ.Options(bits: 4, groupSize: 32)
            #expect(throws: GPTQ.Failure.nonFinite(name: "model.layers.1.mlp.up_proj.weight", index: 5)) {
                if gptq { _ = try GPTQCalibration.quantize(model, samples: [[1, 2, 3, 4]], options: options) }
                else { _ = try GPTQCalibration.roundToNearest(model, options: options) }
            }
        }
    }
}
