import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// The forward pass against transformers on tiny random models (scripts/make-llama-fixtures.py).
struct LlamaTests {
    static let dir = modelFixtures + "/llama"

    static func expected(_ name: String) throws -> (ids: [[Int]], logits: Tensor, loss: Float, file: SafeTensorsFile) {
        let f = try SafeTensorsFile(path: dir + "/\(name)/expected.safetensors")
        let ids = try f.floatTensor("input_ids")
        let rows = ids.shape[0], cols = ids.shape[1]
        let seqs = (0..<rows).map { r in (0..<cols).map { Int(ids[r, $0]) } }
        return (seqs, try f.floatTensor("logits"), try f.floatTensor("loss").array[0], f)
    }

    static func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { maxAbsDifference(a, b) }

    @Test(arguments: ["mha", "gqa_llama3", "tied", "qwen2_bias"])
    func logitsMatchTransformers(name: String) throws {
        let model = try LlamaModel(directory: Self.dir + "/" + name)
        let (ids, logits, _, _) = try Self.expected(name)
        let got = model.forward(ids)
        #expect(got.count == logits.count)
        let diff = Self.maxDiff(got, logits)
        #expect(diff <= 1e-4, "\(name): max |Δlogit| = \(diff)")
    }

    @Test func adapterLogitsMatchPEFT() throws {
        let model = try LlamaModel(directory: Self.dir + "/mha")
        let config = try model.loadAdapter(directory: Self.dir + "/mha/adapter")
        #expect(config.rank == 4 && config.scale == 2)
        let (ids, _, _, file) = try Self.expected("mha")
        let diff = Self.maxDiff(model.forward(ids), try file.floatTensor("logits_adapter"))
        #expect(diff <= 1e-4, "max |Δlogit| with adapter = \(diff)")
    }

    @Test func incrementalDecodingWithTheCacheMatchesTheFullPass() throws {
        let model = try LlamaModel(directory: Self.dir + "/gqa_llama3")
        let (ids, logits, _, _) = try Self.expected("gqa_llama3")
        let cache = KVCache(config: model.config, batch: 2, capacity: 32)
        _ = model.forward(ids.map { Array($0[0..<10]) }, cache: cache)
        var worst: Float = 0
        for t in 10..<24 {
            let step = model.forward(ids.map { [$0[t]] }, cache: cache)  // [2, vocab]
            for b in 0..<2 {
                for v in 0..<128 {
                    worst = max(worst, abs(step[b, v] - logits.pointer[(b * 24 + t) * 128 + v]))
                }
            }
        }
        #expect(worst <= 1e-4, "max |Δlogit| decoding with the cache = \(worst)")
    }

    /// A bf16 checkpoint's projections held as stored (generate's choice) compute what the widened
    /// fp32 copies compute: the same values, summed in another order (the 16-bit GEMV's lanes for
    /// decoding rows, widened panels through sgemm for the prompt).
    @Test func sixteenBitProjectionsComputeWhatTheirWidenedCopiesCompute() throws {
        let dir = NSTemporaryDirectory() + "lqlora-bf16-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let source = try SafeTensorsFile(path: Self.dir + "/gqa_llama3/model.safetensors")
        try SafeTensorsWriter.write(try source.entries.map { PendingTensor(name: $0.name, tensor: try source.floatTensor($0), dtype: .bf16) },
                                    to: dir + "/model.safetensors")
        try FileManager.default.copyItem(atPath: Self.dir + "/gqa_llama3/config.json", toPath: dir + "/config.json")
        let widened = try LlamaModel(directory: dir), stored = try LlamaModel(directory: dir, projections: .asStored)
        #expect(widened.layers[0].linears.allSatisfy { $0.1 is DenseLinear } && stored.layers[0].linears.allSatisfy { $0.1 is HalfLinear })
        let (ids, _, _, _) = try Self.expected("gqa_llama3")
        #expect(Self.maxDiff(widened.forward(ids), stored.forward(ids)) <= 1e-5)
        let a = KVCache(config: widened.config, batch: 2, capacity: 32), b = KVCache(config: stored.config, batch: 2, capacity: 32)
        #expect(Self.maxDiff(widened.forward(ids.map { Array($0[0..<10]) }, cache: a), stored.forward(ids.map { Array($0[0..<10]) }, cache: b)) <= 1e-5)
        for t in 10..<24 {
            #expect(Self.maxDiff(widened.forward(ids.map { [$0[t]] }, cache: a), stored.forward(ids.map { [$0[t]] }, cache: b)) <= 1e-5, "position \(t)")
        }
    }

    @Test func badConfigsAreNamed() throws {
        #expect(throws: ModelError.unsupported(path: "c.json", what: "model_type 'gpt2' (supported: llama, mistral, qwen2)")) {
            try LlamaConfig(json: ["model_type": "gpt2"], path: "c.json")
        }
        #expect(throws: ModelError.badConfig(path: "c.json", key: "hidden_size", detail: "is missing")) {
            try LlamaConfig(json: ["model_type": "llama"], path: "c.json")
        }
        let json: [String: Any] = ["hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4,
                                   "vocab_size": 10, "rope_scaling": ["rope_type": "yarn", "factor": 2.0]]
        #expect(throws: ModelError.unsupported(path: "c.json", what: "rope_scaling type 'yarn' (none, linear and llama3 are)")) {
            try LlamaConfig(json: json, path: "c.json")
        }
    }
}
