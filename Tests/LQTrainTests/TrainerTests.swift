import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTrain
import Testing

/// A temporary directory with a tiny random Llama (vocabulary 1200) carrying the SmolLM-style test
/// tokenizer and a ChatML template, plus small chat / alpaca / text data files.
final class Workspace {
    let root: String

    /// nanWeight: model.norm.weight is NaN; poisoned: one value of that projection weight is +inf.
    init(nanWeight: Bool = false, poisoned: String? = nil) throws {
        root = NSTemporaryDirectory() + "lqlora-train-\(UUID().uuidString)"
        let model = root + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        let config: [String: Any] = ["model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1200, "rms_norm_eps": 1e-5,
                                     "rope_theta": 10000.0, "tie_word_embeddings": true, "max_position_embeddings": 512,
                                     "bos_token_id": 0, "eos_token_id": 2]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: model + "/config.json"))
        var rng = SeededGenerator(seed: 5)
        var tensors = [PendingTensor(name: "model.embed_tokens.weight", tensor: Tensor.gaussian([1200, 32], using: &rng, scale: 0.1)),
                       PendingTensor(name: "model.norm.weight", tensor: Tensor(shape: [32], values: [Float](repeating: nanWeight ? .nan : 1, count: 32)))]
        for l in 0..<2 {
            let p = "model.layers.\(l)."
            for (name, shape) in [("self_attn.q_proj", [32, 32]), ("self_attn.k_proj", [16, 32]), ("self_attn.v_proj", [16, 32]), ("self_attn.o_proj", [32, 32]),
                                  ("mlp.gate_proj", [48, 32]), ("mlp.up_proj", [48, 32]), ("mlp.down_proj", [32, 48])] {
                let w = Tensor.gaussian(shape, using: &rng, scale: 0.15)
                if poisoned == p + name + ".weight" { w.pointer[5] = .infinity }
                tensors.append(PendingTensor(name: p + name + ".weight", tensor: w))
            }
            for norm in ["input_layernorm", "post_attention_layernorm"] {
                tensors.append(PendingTensor(name: p + norm + ".weight", tensor: Tensor(shape: [32], values: [Float](repeating: 1, count: 32))))
            }
        }
        try SafeTensorsWriter.write(tensors, to: model + "/model.safetensors")
        let tokenizer = trainFixtures + "/../../LQModelTests/Fixtures/tokenizers/smollm.json"
        try FileManager.default.copyItem(atPath: tokenizer, toPath: model + "/tokenizer.json")
        let template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        try JSONSerialization.data(withJSONObject: ["chat_template": template]).write(to: URL(fileURLWithPath: model + "/tokenizer_config.json"))

        var chat = "", valid = ""
        let facts = [("What colour is the sky?", "The sky is blue."), ("Name a fruit.", "An apple."), ("What is two plus two?", "Four."),
                     ("Say hello.", "Hello there!"), ("What do bees make?", "Bees make honey."), ("Which animal barks?", "A dog barks.")]
        for i in 0..<24 {
            let (q, a) = facts[i % facts.count]
            chat += "{\"messages\": [{\"role\": \"user\", \"content\": \"\(q) (\(i))\"}, {\"role\": \"assistant\", \"content\": \"\(a)\"}]}\n"
        }
        for (q, a) in facts.prefix(4) { valid += "{\"messages\": [{\"role\": \"user\", \"content\": \"\(q)\"}, {\"role\": \"assistant\", \"content\": \"\(a)\"}]}\n" }
        try chat.write(toFile: root + "/train.jsonl", atomically: true, encoding: .utf8)
        try valid.write(toFile: root + "/valid.jsonl", atomically: true, encoding: .utf8)
    }

    func config(_ extra: String = "") throws -> TrainConfig { try TrainConfig(yaml: yaml(extra)) }

    func yaml(_ extra: String = "") -> String {
        """
        model: \(root)/model
        output_dir: \(root)/run
        data: {train: \(root)/train.jsonl, valid: \(root)/valid.jsonl}
        lora: {rank: 4, alpha: 8, dropout: 0.1}
        train: {seq_len: 64, batch_size: 2, grad_accum: 2, max_steps: 6, lr: 0.01, warmup: 1, schedule: linear}
        eval: {every: 3, batches: 2}
        checkpoint: {every: 2, keep: 2}
        \(extra)
        """
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }
}

func metricLosses(_ dir: String) throws -> [Int: Double] {
    var out: [Int: Double] = [:]
    for line in try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
        let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        if let loss = obj["loss"] as? Double { out[obj["step"] as! Int] = loss }
    }
    return out
}

struct TrainerTests {
    /// In-process runs share OpenBLAS's global thread setting with suites running alongside, so
    /// they agree to rounding here; FinetuneCommandTests checks bit-for-bit in separate processes.
    @Test func interruptedAndResumedRunsLossLikeAnUninterruptedOne() throws {
        let ws = try Workspace()
        var config = try ws.config()
        let straight = try Trainer(config: config)
        #expect(try straight.run() == .finished)
        let reference = try metricLosses(config.outputDir)
        #expect(reference.count == 6)
        #expect(Trainer.checkpoints(in: config.outputDir) == [2, 4])  // step 6 is the final adapter; keep 2

        config.outputDir = ws.root + "/run2"
        let first = try Trainer(config: config)
        first.shouldStop = { first.step >= 3 }
        #expect(try first.run() == .interrupted(step: 3))
        #expect(Trainer.checkpoints(in: config.outputDir) == [2, 3])
        let second = try Trainer(config: config)
        try second.resume(from: config.outputDir)
        #expect(second.step == 3)
        #expect(try second.run() == .finished)
        let resumed = try metricLosses(config.outputDir)
        #expect(resumed.keys.sorted() == reference.keys.sorted())
        for (step, loss) in reference { #expect(abs(resumed[step]! - loss) <= 1e-6 * loss, "step \(step): resumed \(resumed[step]!) vs \(loss)") }

        // The final adapter is a PEFT directory that loads onto the base, equal to what trained.
        let base = try LlamaModel(directory: config.model)
        let adapter = try base.loadAdapter(directory: config.outputDir)
        #expect(adapter.rank == 4 && adapter.scale == 2)
        let saved = try SafeTensorsFile(path: config.outputDir + "/adapter_model.safetensors")
        #expect(second.parameters.values.count == second.parameters.names.count)
        for (name, value) in zip(second.parameters.names, second.parameters.values) {
            #expect(try saved.floatTensor(name).array == value.array)
        }
        #expect(FileManager.default.fileExists(atPath: config.outputDir + "/loss.svg"))
        #expect(try String(contentsOfFile: config.outputDir + "/loss.svg", encoding: .utf8).contains("<polyline"))
    }

    @Test func trainingLowersTheValidationLoss() throws {
        let ws = try Workspace()
        let config = try ws.config("")
        var settings = config
        settings.maxSteps = 30
        settings.checkpointEvery = 0
        settings.evalEvery = 30
        settings.dropout = 0
        let trainer = try Trainer(config: settings)
        let before = try trainer.evaluate(trainer.valid!).mean
        #expect(try trainer.run() == .finished)
        let after = try trainer.evaluate(trainer.valid!).mean
        #expect(after < before - 0.5, "validation loss \(before) → \(after)")
    }

    @Test func eightBitAndCheckpointedRunsTrainToo() throws {
        let ws = try Workspace()
        var config = try ws.config()
        config.optimizer = .adamw8bit
        config.gradCheckpoint = true
        config.packing = true
        config.maxSteps = 4
        let trainer = try Trainer(config: config)
        #expect(try trainer.run() == .finished)
        #expect(try metricLosses(config.outputDir).count == 4)
    }

    @Test func aNaNLossStopsWithTheStepAndWritesNothingNew() throws {
        let ws = try Workspace(nanWeight: true)
        let trainer = try Trainer(config: try ws.config())
        #expect {
            _ = try trainer.run()
        } throws: { error in
            "\(error)".contains("the loss became NaN at step 1") && "\(error)".contains("no checkpoint")
                && "\(error)".contains("first not finite: the final hidden states (layer 1's down_proj output or model.norm)")
        }
        #expect(Trainer.checkpoints(in: trainer.config.outputDir).isEmpty)
    }

    /// The stop names where the forward pass first went non-finite: an infinite weight in layer 1's
    /// up_proj makes the SwiGLU product, the input of down_proj, the first value that is not.
    @Test func aNaNLossNamesTheLayerWhereItAppeared() throws {
        let ws = try Workspace(poisoned: "model.layers.1.mlp.up_proj.weight")
        let trainer = try Trainer(config: try ws.config())
        #expect {
            _ = try trainer.run()
        } throws: { error in
            "\(error)".contains("first not finite: layer 1's SwiGLU of gate_proj and up_proj, the input of model.layers.1.mlp.down_proj")
        }
        // Finite weights: no cause to name.
        let finite = try Workspace()
        let clean = try Trainer(config: try finite.config())
        #expect(clean.model.firstNonFinite(in: [[1, 2, 3, 4]]) == nil)
    }
}
