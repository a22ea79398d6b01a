import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTrain
import Testing

/// A BF16 checkpoint keeps its embeddings (and LM head) 16-bit in memory: the forward pass, the
/// loss and the LoRA gradients equal those of an F32 checkpoint holding the same values.
struct SixteenBitTests {
    /// Copies `source` (a model directory) with every tensor written as `dtype`.
    static func rewrite(_ source: String, to target: String, dtype: DType) throws {
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: source) where file != "model.safetensors" {
            try FileManager.default.copyItem(atPath: source + "/" + file, toPath: target + "/" + file)
        }
        let checkpoint = try SafeTensorsFile(path: source + "/model.safetensors")
        try SafeTensorsWriter.write(try checkpoint.tensorNames.map { PendingTensor(name: $0, tensor: try checkpoint.floatTensor($0), dtype: dtype) },
                                    to: target + "/model.safetensors")
    }

    @Test func bf16CheckpointComputesWhatItsFloat32TwinComputes() throws {
        let root = NSTemporaryDirectory() + "lqlora-bf16-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.rewrite(trainFixtures + "/tiny", to: root + "/bf16", dtype: .bf16)
        try Self.rewrite(root + "/bf16", to: root + "/f32", dtype: .f32)  // the same values, stored as fp32

        let half = try LlamaModel(directory: root + "/bf16"), full = try LlamaModel(directory: root + "/f32")
        guard half.embed is HalfLinear, full.embed is DenseLinear else {
            Issue.record("embeddings: \(type(of: half.embed)) and \(type(of: full.embed))")
            return
        }
        let (tokens, labels, _) = try fixtureBatch()
        #expect(maxAbsDifference(half.forward(tokens), full.forward(tokens)) <= 1e-5)
        // Decoding one position at a time goes through the fused 16-bit GEMV.
        let single = tokens.map { Array($0.prefix(1)) }
        #expect(maxAbsDifference(half.forward(single), full.forward(single)) <= 1e-5)

        var grads: [[Tensor]] = []
        var losses: [Double] = []
        for model in [half, full] {
            let config = try model.loadAdapter(directory: trainFixtures + "/tiny/adapter")
            let params = AdapterParameters(model: model, config: config, dropout: 0)
            var rng = SeededGenerator(seed: 0)
            losses.append(model.accumulateGradients(tokens: tokens, labels: labels, normalizer: targetCount(labels), into: params, rng: &rng).mean)
            grads.append(params.grads)
        }
        #expect(abs(losses[0] - losses[1]) <= 1e-6 * abs(losses[1]))
        #expect(grads[0].count == grads[1].count && !grads[0].isEmpty)
        for (a, b) in zip(grads[0], grads[1]) {
            let scale = b.array.map(abs).max() ?? 0
            #expect(maxAbsDifference(a, b) <= 1e-5 * scale + 1e-9)
        }
    }
}

func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.pointer[i] - b.pointer[i])) }
    return m
}
