import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

let trainFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// The tiny GQA Llama of scripts/make-training-fixtures.py with its PEFT adapter attached.
func tinyModelWithAdapter() throws -> (LlamaModel, AdapterParameters) {
    let model = try LlamaModel(directory: trainFixtures + "/tiny")
    let config = try model.loadAdapter(directory: trainFixtures + "/tiny/adapter")
    return (model, AdapterParameters(model: model, config: config, dropout: 0))
}

func fixtureBatch() throws -> (tokens: [[Int]], labels: [[Int]], file: SafeTensorsFile) {
    let f = try SafeTensorsFile(path: trainFixtures + "/tiny/expected.safetensors")
    func rows(_ name: String) throws -> [[Int]] {
        let t = try f.floatTensor(name)
        return (0..<t.shape[0]).map { r in (0..<t.shape[1]).map { Int(t[r, $0]) } }
    }
    return (try rows("input_ids"), try rows("labels"), f)
}

func targetCount(_ labels: [[Int]]) -> Int { labels.reduce(0) { $0 + $1.dropFirst().filter { $0 != ignoreLabel }.count } }

struct BackwardTests {
    @Test func lossAndEveryLoRAGradientMatchPEFT() throws {
        let (model, params) = try tinyModelWithAdapter()
        let (tokens, labels, file) = try fixtureBatch()
        var rng = SeededGenerator(seed: 0)
        let loss = model.accumulateGradients(tokens: tokens, labels: labels, normalizer: targetCount(labels), into: params, rng: &rng)
        let expectedLoss = try file.floatTensor("loss").array[0]
        #expect(abs(loss.mean - Double(expectedLoss)) <= 1e-5 * Double(expectedLoss), "loss \(loss.mean) vs transformers \(expectedLoss)")
        #expect(params.names.count == 28)
        #expect(params.grads.count == params.names.count)
        for (name, grad) in zip(params.names, params.grads) {
            let reference = try file.floatTensor("grad." + name)
            var worst: Float = 0, scale: Float = 0
            for i in 0..<reference.count {
                worst = max(worst, abs(grad.pointer[i] - reference.pointer[i]))
                scale = max(scale, abs(reference.pointer[i]))
            }
            #expect(scale > 0 && worst <= 1e-4 * scale + 1e-7, "\(name): max |Δgrad| \(worst) against max |grad| \(scale)")
        }
    }

    /// (L(θ + εd) − L(θ − εd)) / 2ε against ⟨∇L, d⟩ for a random direction d in one matrix at a time.
    static func checkDirectionalDerivatives(_ model: LlamaModel, _ params: AdapterParameters, tokens: [[Int]], labels: [[Int]],
                                            seed: UInt64 = 0, checkpointing: Bool = false) {
        let n = targetCount(labels)
        func loss() -> Double {
            var rng = SeededGenerator(seed: seed)
            let l = model.accumulateGradients(tokens: tokens, labels: labels, normalizer: n, into: params, checkpointing: checkpointing, rng: &rng)
            return l.sum / Double(n)
        }
        params.zeroGradients()
        _ = loss()
        let grads = params.grads.map { $0.copy() }
        var directions = SeededGenerator(seed: 42)
        for (index, value) in params.values.enumerated() where index % 3 == 0 || index == params.values.count - 1 {
            let d = Tensor.gaussian(value.shape, using: &directions)
            var analytic = 0.0, dNorm = 0.0
            for i in 0..<d.count {
                analytic += Double(grads[index].pointer[i]) * Double(d.pointer[i])
                dNorm += Double(d.pointer[i] * d.pointer[i])
            }
            let eps = Float(3e-3 / dNorm.squareRoot())
            let saved = value.copy()
            for i in 0..<d.count { value.pointer[i] = saved.pointer[i] + eps * d.pointer[i] }
            let plus = loss()
            for i in 0..<d.count { value.pointer[i] = saved.pointer[i] - eps * d.pointer[i] }
            let minus = loss()
            value.pointer.update(from: saved.pointer, count: saved.count)
            let numeric = (plus - minus) / (2 * Double(eps))
            let gNorm = grads[index].frobeniusNorm * dNorm.squareRoot()
            #expect(abs(numeric - analytic) <= 2e-2 * gNorm + 2e-4, "\(params.names[index]): finite difference \(numeric) vs gradient \(analytic)")
        }
    }

    @Test(arguments: ["mha", "gqa_llama3", "tied", "qwen2_bias"])
    func gradientsMatchFiniteDifferences(variant: String) throws {
        let model = try LlamaModel(directory: trainFixtures + "/../../LQModelTests/Fixtures/llama/" + variant)
        var rng = SeededGenerator(seed: 3)
        let config = AdapterConfig(rank: 3, alpha: 6, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        let params = AdapterParameters.attachFresh(to: model, config: config, dropout: 0, rng: &rng)
        for b in params.values where b.shape[1] == 3 { for i in 0..<b.count { b.pointer[i] = rng.nextGaussian() * 0.05 } }
        let tokens = (0..<2).map { _ in (0..<12).map { _ in Int(rng.next() % 128) } }
        var labels = tokens
        labels[0][0..<4] = [ignoreLabel, ignoreLabel, ignoreLabel, ignoreLabel][...]
        Self.checkDirectionalDerivatives(model, params, tokens: tokens, labels: labels)
    }

    @Test func gradientsThroughAnNF4BaseMatchFiniteDifferences() throws {
        let dense = try LlamaModel(directory: trainFixtures + "/tiny")
        // The same model with every projection quantized to NF4 (double-quantized) in memory.
        let layers = try dense.layers.map { l -> LlamaLayer in
            func q(_ p: Projection) throws -> any LinearOperator {
                guard let dense = l[p] as? DenseLinear else { return l[p] }
                return QuantizedLinear(weight: try Quantizer.quantize(dense.weight, config: .qlora(bits: 4), name: "w"))
            }
            return LlamaLayer(inputNorm: l.inputNorm, postNorm: l.postNorm, q: try q(.q), k: try q(.k), v: try q(.v), o: try q(.o),
                              gate: try q(.gate), up: try q(.up), down: try q(.down))
        }
        let model = LlamaModel(config: dense.config, embed: dense.embed, layers: layers, norm: dense.norm, lmHead: dense.lmHead)
        let config = try model.loadAdapter(directory: trainFixtures + "/tiny/adapter")
        let params = AdapterParameters(model: model, config: config, dropout: 0)
        let (tokens, labels, _) = try fixtureBatch()
        Self.checkDirectionalDerivatives(model, params, tokens: tokens, labels: labels)
    }

    @Test func adapterDropoutGradientsMatchFiniteDifferences() throws {
        let model = try LlamaModel(directory: trainFixtures + "/tiny")
        let config = try model.loadAdapter(directory: trainFixtures + "/tiny/adapter")
        let params = AdapterParameters(model: model, config: config, dropout: 0.25)
        let (tokens, labels, _) = try fixtureBatch()
        Self.checkDirectionalDerivatives(model, params, tokens: tokens, labels: labels, seed: 7)
    }

    @Test func checkpointingAndAccumulationGiveTheSameGradients() throws {
        let (tokens, labels, _) = try fixtureBatch()
        let n = targetCount(labels)
        func gradients(checkpointing: Bool, split: Bool, dropout: Float) throws -> ([Float], Double) {
            let model = try LlamaModel(directory: trainFixtures + "/tiny")
            let config = try model.loadAdapter(directory: trainFixtures + "/tiny/adapter")
            let params = AdapterParameters(model: model, config: config, dropout: dropout)
            var rng = SeededGenerator(seed: 11)
            var loss = TokenLoss()
            if split {
                for b in 0..<2 {
                    loss += model.accumulateGradients(tokens: [tokens[b]], labels: [labels[b]], normalizer: n, into: params, checkpointing: checkpointing, rng: &rng)
                }
            } else {
                loss = model.accumulateGradients(tokens: tokens, labels: labels, normalizer: n, into: params, checkpointing: checkpointing, rng: &rng)
            }
            return (params.grads.flatMap { $0.array }, loss.mean)
        }
        let (plain, lossPlain) = try gradients(checkpointing: false, split: false, dropout: 0)
        let (recomputed, lossRecomputed) = try gradients(checkpointing: true, split: false, dropout: 0)
        #expect(plain == recomputed && lossPlain == lossRecomputed)  // recomputation is the same arithmetic
        let (accumulated, lossAccumulated) = try gradients(checkpointing: false, split: true, dropout: 0)
        #expect(abs(lossAccumulated - lossPlain) <= 1e-6 * lossPlain)
        let worst = zip(plain, accumulated).map { abs($0 - $1) }.max()!, scale = plain.map(abs).max()!
        #expect(worst <= 1e-5 * scale, "accumulating two half batches: max |Δgrad| \(worst)")
        let (dropped, _) = try gradients(checkpointing: false, split: false, dropout: 0.3)
        let (droppedRecomputed, _) = try gradients(checkpointing: true, split: false, dropout: 0.3)
        #expect(dropped == droppedRecomputed)  // recomputation replays the same dropout masks
        #expect(dropped != plain)
    }
}

struct FisherTests {
    @Test func diagonalFisherMatchesTorch() throws {
        let model = try LlamaModel(directory: trainFixtures + "/tiny")
        let (tokens, labels, _) = try fixtureBatch()
        let examples = zip(tokens, labels).map { Example(tokens: $0, labels: $1) }
        let fisher = FisherEstimator.estimate(model, examples: examples, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        let reference = try SafeTensorsFile(path: trainFixtures + "/tiny/fisher.safetensors")
        #expect(fisher.count == 14)
        for (name, f) in fisher {
            let r = try reference.floatTensor(name)
            var worst: Float = 0, scale: Float = 0
            for i in 0..<r.count {
                worst = max(worst, abs(f.pointer[i] - r.pointer[i]))
                scale = max(scale, r.pointer[i])
            }
            #expect(scale > 0 && worst <= 2e-4 * scale, "\(name): max |ΔF| \(worst) against max F \(scale)")
        }
    }
}

/// Generation reads an adapter from IEEE-half copies (`loadAdapter(halfCopiesForDecoding:)`): the
/// prompt's batched pass is the fp32 one exactly; decoding steps stay within half's rounding of it.
struct HalfAdapterDecodingTests {
    @Test func halfCopiesChangeDecodingByHalfsRoundingOnly() throws {
        let exact = try LlamaModel(directory: trainFixtures + "/tiny"), half = try LlamaModel(directory: trainFixtures + "/tiny")
        try exact.loadAdapter(directory: trainFixtures + "/tiny/adapter")
        try half.loadAdapter(directory: trainFixtures + "/tiny/adapter", halfCopiesForDecoding: true)
        let adapted = half.layers.flatMap { layer in layer.linears.compactMap { $0.1 as? LoRALinear } }
        #expect(!adapted.isEmpty && adapted.allSatisfy { $0.decodingCopies != nil })
        let (tokens, _, _) = try fixtureBatch()
        let prompt = [Array(tokens[0].prefix(8))]
        let a = KVCache(config: exact.config, batch: 1, capacity: 64), b = KVCache(config: half.config, batch: 1, capacity: 64)
        #expect(exact.forward(prompt, cache: a).array == half.forward(prompt, cache: b).array)
        var worst: Float = 0, largest: Float = 0
        for t in 8..<tokens[0].count {
            let x = exact.forward([[tokens[0][t]]], cache: a).array, y = half.forward([[tokens[0][t]]], cache: b).array
            worst = max(worst, zip(x, y).map { abs($0 - $1) }.max()!)
            largest = max(largest, x.map(abs).max()!)
        }
        print("half adapter decoding: max |Δlogit| \(worst) of max |logit| \(largest)")
        #expect(worst > 0 && worst <= 5e-4 * largest)
    }
}
