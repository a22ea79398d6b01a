import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// The model core's extension points against independent oracles: what a ForwardObserver sees is
/// what transformers feeds each projection (scripts/make-observer-fixtures.py), and adapters fused
/// into their base weights give PEFT's logits.
struct ModelCoreTests {
    /// Records every projection input a forward pass shows it.
    final class Recorder: ForwardObserver {
        var inputs: [String: Tensor] = [:]
        var order: [LinearSite] = []
        func observeInput(_ x: Tensor, of site: LinearSite) {
            inputs[site.module] = x.copy()
            order.append(site)
        }
    }

    @Test(arguments: ["gqa_llama3", "qwen2_bias"])
    func observerSeesEachProjectionsInputAsTransformersFeedsIt(name: String) throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/" + name)
        let (ids, logits, _, _) = try LlamaTests.expected(name)
        let oracle = try SafeTensorsFile(path: modelFixtures + "/oracles/projection-inputs-\(name).safetensors")
        let recorder = Recorder()
        let observed = model.logits(model.hiddenStates(ids, observer: recorder))
        #expect(LlamaTests.maxDiff(observed, logits) <= 1e-4, "observing changed the logits")
        #expect(recorder.order == (0..<model.config.layerCount).flatMap { l in Projection.allCases.map { LinearSite.projection(layer: l, $0) } })
        #expect(recorder.inputs.count == oracle.tensorNames.count)
        for key in oracle.tensorNames {
            let expected = try oracle.floatTensor(key)
            guard let got = recorder.inputs[key] else { Issue.record("\(name): no input observed for \(key)"); continue }
            #expect(got.shape == expected.shape, "\(key): \(got.shape) vs \(expected.shape)")
            let scale = (0..<expected.count).reduce(Float(0)) { max($0, abs(expected.pointer[$1])) }
            #expect(maxAbsDifference(got, expected) <= 1e-5 * max(scale, 1), "\(name) \(key)")
        }
    }

    @Test func fusedAdaptersGivePEFTsLogits() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        try model.loadAdapter(directory: LlamaTests.dir + "/mha/adapter")
        var fused = 0
        for layer in model.layers {
            for (p, linear) in layer.linears {
                guard let adapter = linear as? LoRALinear else { continue }
                let merged = adapter.fused()
                // Row access through the adapter is the fused row.
                let row = Tensor(zeros: [adapter.inFeatures])
                adapter.weightRow(3, into: row.pointer)
                #expect(maxAbsDifference(row, merged.weight.rows(3..<4).reshaped([adapter.inFeatures])) <= 1e-6)
                layer[p] = merged
                fused += 1
            }
        }
        #expect(fused == 14)
        let (ids, _, _, file) = try LlamaTests.expected("mha")
        let diff = LlamaTests.maxDiff(model.forward(ids), try file.floatTensor("logits_adapter"))
        #expect(diff <= 1e-4, "max |Δlogit| with the adapters fused = \(diff)")
        model.removeAdapters()  // nothing to remove: the fused layers are plain dense ones
        #expect(LlamaTests.maxDiff(model.forward(ids), try file.floatTensor("logits_adapter")) <= 1e-4)
    }

    @Test func removingAnAdapterGivesTheBaseModelBack() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        try model.loadAdapter(directory: LlamaTests.dir + "/mha/adapter")
        model.removeAdapters()
        let (ids, logits, _, _) = try LlamaTests.expected("mha")
        #expect(model.layers.allSatisfy { $0.linears.allSatisfy { !($0.1 is LoRALinear) } })
        #expect(LlamaTests.maxDiff(model.forward(ids), logits) <= 1e-4)
    }
}
