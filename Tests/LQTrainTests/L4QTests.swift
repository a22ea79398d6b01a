import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

/// L4Q's quantization-aware LoRA against torch autograd of the same formulas
/// (scripts/make-l4q-fixtures.py: the tiny Llama, its adapter's A and B, 3 bits, groups of 32).
struct L4QTests {
    /// The fixture adapter's LoRA layers turned into L4Q layers over the same bases.
    static func model(bits: Int, group: Int) throws -> (LlamaModel, AdapterParameters) {
        let (model, _) = try tinyModelWithAdapter()
        for layer in model.layers {
            for (p, linear) in layer.linears {
                guard let lora = linear as? LoRALinear else { continue }
                layer[p] = QuantizationAwareLoRA(base: lora.base, a: lora.a.copy(), b: lora.b.copy(), scale: lora.scale, bits: bits, groupSize: group)
            }
        }
        return (model, AdapterParameters(model: model, config: try AdapterConfig(directory: trainFixtures + "/tiny/adapter"), dropout: 0))
    }

    @Test func initialisationLossAndEveryGradientMatchTorch() throws {
        let file = try SafeTensorsFile(path: trainFixtures + "/tiny/l4q.safetensors")
        let bits = Int(try file.floatTensor("bits").array[0]), group = Int(try file.floatTensor("group").array[0])
        let (model, params) = try Self.model(bits: bits, group: group)
        #expect(params.names.count == 14 * 4)
        let (tokens, labels, _) = try fixtureBatch()
        // The initial steps and offsets are the min–max ones torch computed.
        for (name, value) in zip(params.names, params.values) where name.hasSuffix("l4q_step") || name.hasSuffix("l4q_offset") {
            let module = String(name.dropLast(name.hasSuffix("l4q_step") ? ".l4q_step".count : ".l4q_offset".count))
            let reference = try file.floatTensor((name.hasSuffix("l4q_step") ? "init_step." : "init_offset.") + module)
            #expect(maxAbsDifference(value, reference) <= 1e-6 * (reference.array.map(abs).max() ?? 1), "\(name)")
        }
        var rng = SeededGenerator(seed: 0)
        let loss = model.accumulateGradients(tokens: tokens, labels: labels, normalizer: targetCount(labels), into: params, rng: &rng)
        let expected = Double(try file.floatTensor("loss").array[0])
        #expect(abs(loss.mean - expected) <= 1e-5 * expected, "loss \(loss.mean) vs torch \(expected)")
        for (name, grad) in zip(params.names, params.grads) {
            let key: String
            if name.hasSuffix("l4q_step") { key = "grad_step." + name.dropLast(".l4q_step".count) }
            else if name.hasSuffix("l4q_offset") { key = "grad_offset." + name.dropLast(".l4q_offset".count) }
            else { key = "grad." + name }
            let reference = try file.floatTensor(key)
            let (worst, scale) = (maxAbsDifference(grad, reference), reference.array.map(abs).max() ?? 0)
            #expect(scale > 0 && worst <= 1e-4 * scale + 1e-7, "\(name): max |Δgrad| \(worst) against max |grad| \(scale)")
        }
    }

    /// While warming up (W' unquantized) the layer is plain LoRA on W0, whose gradients are true
    /// derivatives: finite differences check them. (Through the quantizer the gradients are
    /// straight-through estimates, not derivatives of the piecewise-constant loss: torch checks those.)
    @Test func warmUpGradientsMatchFiniteDifferences() throws {
        let (model, params) = try Self.model(bits: 3, group: 32)
        for layer in model.layers { for (_, l) in layer.linears { (l as? QuantizationAwareLoRA)?.quantizing = false } }
        let (tokens, labels, _) = try fixtureBatch()
        BackwardTests.checkDirectionalDerivatives(model, params, tokens: tokens, labels: labels)
    }

    /// The trained layer's integer codes, scales and fractional zero points reproduce W_q.
    @Test func theUniformQuantizationIsTheWeightTheLayerComputesWith() throws {
        let (model, _) = try Self.model(bits: 3, group: 32)
        for layer in model.layers {
            for (_, linear) in layer.linears {
                let l4q = try #require(linear as? QuantizationAwareLoRA)
                let q = l4q.quantization(), wq = l4q.effectiveWeight()
                #expect(maxAbsDifference(q.dequantized(), wq) <= 1e-5 * (wq.array.map(abs).max() ?? 1))
                #expect(q.codes.allSatisfy { $0 < 8 })
                #expect(maxAbsDifference(l4q.denseWeight(), wq) <= 1e-6)
            }
        }
    }
}

/// l4q.bits in the training loop: the Workspace's tiny model trained through a 4-bit quantizer.
struct L4QTrainerTests {
    @Test func aRunEndsWithAQuantizedModelThatComputesWhatTrainingLastComputed() throws {
        let ws = try Workspace()
        let settings = try TrainConfig(yaml: ws.yaml("l4q: {bits: 4, group_size: 16, warmup_steps: 1}"),
                                       overrides: ["lora.dropout=0", "train.max_steps=6", "checkpoint.every=0"])
        let trainer = try Trainer(config: settings)
        #expect(trainer.parameters.names.filter { $0.hasSuffix("l4q_step") }.count == 14)
        let before = try trainer.evaluate(trainer.valid!).mean
        #expect(try trainer.run() == .finished)
        let trained = try trainer.evaluate(trainer.valid!).mean
        #expect(trained < before, "validation loss \(before) → \(trained)")
        let directory = ws.root + "/run/model"
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/run/adapter_model.safetensors"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/quant_report.json"))) as! [String: Any]
        #expect(report["method"] as? String == "l4q" && report["average_bits"] as? Double == 4 + 32.0 / 16)
        // Loaded back, every projection runs on the uniform kernels, and the model's loss is the
        // trained one up to the fp16 rounding of the scales and zero points.
        let loaded = try LlamaModel(directory: directory)
        #expect(loaded.layers.allSatisfy { $0.linears.allSatisfy { $0.1 is UniformLinear } })
        let batch = BatchPlan(examples: trainer.valid!.examples, batchSize: 2, seqLen: 64, packing: false, pad: 2, seed: 0).batches(epoch: 0, shuffle: false)[0]
        let mine = trainer.model.loss(tokens: batch.tokens, labels: batch.labels).mean, theirs = loaded.loss(tokens: batch.tokens, labels: batch.labels).mean
        #expect(abs(mine - theirs) <= 2e-3 * mine, "loss \(mine) in training, \(theirs) loaded")
        // L4Q on that (already quantized) model is refused by name, before any work.
        #expect {
            _ = try Trainer(config: try TrainConfig(yaml: ws.yaml("l4q: {bits: 4, group_size: 16}"), overrides: ["lora.dropout=0", "model=\(directory)"]))
        } throws: { "\($0)".hasPrefix("l4q.bits on \(directory): model.layers.0.self_attn.q_proj.weight is already quantized") }
    }

    @Test func l4qKeysAreCheckedTogether() throws {
        let ws = try? Workspace()
        #expect(throws: ConfigError.badValue(key: "lora.dropout", detail: "must be 0 with l4q.bits (L4Q trains through the quantizer without adapter dropout)")) {
            try TrainConfig(yaml: ws!.yaml("l4q: {bits: 4}"))
        }
        #expect(throws: ConfigError.badValue(key: "l4q.group_size", detail: "applies only with l4q.bits set")) {
            try TrainConfig(yaml: ws!.yaml("l4q: {group_size: 64}"))
        }
        #expect(throws: ConfigError.badValue(key: "l4q.format", detail: "must be one of gptq, lqlora (got gptp); did you mean 'gptq'?")) {
            try TrainConfig(yaml: ws!.yaml("l4q: {bits: 4, format: gptp}"), overrides: ["lora.dropout=0"])
        }
        #expect(throws: ConfigError.badValue(key: "l4q.format", detail: "applies only with l4q.bits set")) {
            try TrainConfig(yaml: ws!.yaml("l4q: {format: gptq}"))
        }
        #expect(try TrainConfig(yaml: ws!.yaml("l4q: {bits: 4}"), overrides: ["lora.dropout=0"]).l4qFormat == .lqlora)
        #expect(throws: ConfigError.badValue(key: "l4q.bits", detail: "is 5; the uniform storage takes 2, 3, 4 or 8")) {
            try TrainConfig(yaml: ws!.yaml("l4q: {bits: 5}"), overrides: ["lora.dropout=0"])
        }
    }
}
