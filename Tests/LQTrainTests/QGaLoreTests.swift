import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

/// Q-GaLore, GaLore and full AdamW against scripts/make-qgalore-fixtures.py: the reference's
/// functions (VITA-Group/Q-GaLore) in torch with bitsandbytes' 8-bit Adam, on the tiny Llama.
struct QGaLoreTests {
    static let fixture = trainFixtures + "/qgalore.safetensors"

    static func codes(_ q: GroupQuantizedMatrix) -> [Float] { (0..<q.count).map { Float(q.code($0)) } }

    @Test func theUniformStreamIsTheFixtureScripts() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        var rng = SeededGenerator(keys: [1, 2, 3])
        #expect(try (0..<16).map { _ in Float(rng.next() >> 40) * 0x1p-24 } == file.floatTensor("stream.uniforms").array)
    }

    @Test func groupQuantizerGivesTheReferencesCodesWithZeroInEveryRange() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        for (k, (name, bits, stochastic)) in [("8_nearest", 8, false), ("4_nearest", 4, false), ("8_stochastic", 8, true), ("4_stochastic", 4, true)].enumerated() {
            let w = try file.floatTensor("quant.\(name).input")
            let q = GroupQuantizedMatrix(w.pointer, rows: 16, cols: 48, bits: bits, groupSize: 256,
                                         rounding: stochastic ? .stochastic(keys: [7, UInt64(k)]) : .nearest)
            #expect(q.codes.count == (bits == 8 ? 768 : 384), "\(name): codes are packed")
            #expect(try Self.codes(q) == file.floatTensor("quant.\(name).codes").array, "\(name): codes")
            #expect(try q.scales == file.floatTensor("quant.\(name).scales").array, "\(name): scales")
            #expect(try q.zeros == file.floatTensor("quant.\(name).zeros").array, "\(name): zero points")
            // Every value lies within one step of its dequantized code (half a step to nearest),
            // also in the group of one sign (256..<512), where the reference loses its range.
            let back = q.dequantized()
            for g in 0..<3 {
                var worst: Float = 0
                for i in (g * 256)..<((g + 1) * 256) { worst = max(worst, abs(back.pointer[i] - w.pointer[i])) }
                #expect(worst <= q.scales[g] * (stochastic ? 1.0001 : 0.5001), "\(name), group \(g): max |ŵ − w| \(worst), scale \(q.scales[g])")
            }
            if bits == 4 && !stochastic {
                var positive: Float = 0
                for i in 256..<512 { positive = max(positive, abs(back.pointer[i] - w.pointer[i])) }
                let reference = try file.floatTensor("quant.reference_one_signed_error").array[0]
                #expect(reference > 2 * positive, "the reference's error on a one-signed group \(reference), ours \(positive)")
            }
        }
    }

    @Test func projectorMatchesTheReferenceOnBothSides() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        for side in ["right", "left"] {
            let g = try file.floatTensor("proj.\(side).g").copy()
            let projector = GaLoreProjector(rows: g.shape[0], cols: g.shape[1], rank: 8, scale: 0.25,
                                            schedule: .init(gap: 200, queueSize: 5, threshold: 0.4, gamma: 2), storage: .quantized(bits: 4, groupSize: 64))
            #expect(projector.side.rawValue == side)
            let low = try projector.project(g, iteration: 0)
            #expect(projector.refreshes == [0])
            let p = try file.floatTensor("proj.\(side).p")
            let q = try #require(projector.codes)
            #expect(try Self.codes(q) == file.floatTensor("proj.\(side).codes").array, "\(side): 4-bit codes of P")
            let scaleError = maxAbsDifference(Tensor(shape: [q.scales.count], values: q.scales), try file.floatTensor("proj.\(side).scales"))
            #expect(scaleError <= 1e-7, "\(side): scales within \(scaleError)")
            #expect(try q.zeros == file.floatTensor("proj.\(side).zeros").array)
            #expect(p.shape == projector.projectionShape)
            let lowError = maxAbsDifference(low, try file.floatTensor("proj.\(side).low"))
            #expect(lowError <= 1e-5, "\(side): low-rank gradient within \(lowError)")
            let back = projector.projectBack(try file.floatTensor("proj.\(side).update"))
            #expect(maxAbsDifference(back, try file.floatTensor("proj.\(side).back")) <= 1e-5, "\(side): projected back")
        }
    }

    /// The tiny model with every projection trained by `method` as the fixture script ran it.
    static func training(_ method: TrainConfig.Method, file: SafeTensorsFile) throws -> (LlamaModel, FullRankTraining) {
        let model = try LlamaModel(directory: trainFixtures + "/tiny")
        var c = TrainConfig()
        c.method = method
        c.qgalore.rank = 8
        c.qgalore.updateProjGap = 2
        c.qgalore.queueSize = 2
        c.qgalore.cosThreshold = try file.floatTensor("qgalore.cos_threshold").array.map(Double.init)[0]
        if method == .full {
            c.optimizer = .adamw
            c.adam = AdamW.Settings(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
        } else {
            c.optimizer = .adamw8bit
            c.min8BitSize = 600
            c.adam = AdamW.Settings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        }
        return (model, try FullRankTraining(model: model, config: c))
    }

    /// Runs the fixture's steps; returns the losses.
    static func run(_ model: LlamaModel, _ training: FullRankTraining, method: String, file: SafeTensorsFile) throws -> [Double] {
        let ids = try file.floatTensor("\(method).input_ids"), labels = try file.floatTensor("\(method).labels")
        let steps = ids.shape[0], batch = ids.shape[1], length = ids.shape[2]
        func rows(_ t: Tensor, _ s: Int) -> [[Int]] { (0..<batch).map { b in (0..<length).map { Int(t.pointer[(s * batch + b) * length + $0]) } } }
        var losses: [Double] = []
        for s in 0..<steps {
            var rng = SeededGenerator(seed: 0)
            training.beginStep(learningRate: 1e-3)
            let l = rows(labels, s)
            losses.append(model.accumulateGradients(tokens: rows(ids, s), labels: l, normalizer: targetCount(l), into: training, rng: &rng).mean)
            _ = try training.finishStep()
        }
        return losses
    }

    static func expectLosses(_ ours: [Double], _ reference: [Float], _ what: String) {
        #expect(ours.count == reference.count)
        for (s, (a, b)) in zip(ours, reference).enumerated() {
            #expect(abs(a - Double(b)) <= 2e-6 * Double(b), "\(what) step \(s + 1): loss \(a), reference \(b)")
        }
    }

    @Test func tenQGaLoreStepsMatchTheReference() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        let (model, training) = try Self.training(.qGalore, file: file)
        Self.expectLosses(try Self.run(model, training, method: "qgalore", file: file), try file.floatTensor("qgalore.losses").array, "q-galore")
        let saved = try SafeTensorsFile(path: try Self.savedState(training))  // the checkpoint's optimizer entries
        func state(_ name: String) throws -> Tensor { try saved.floatTensor(name) }
        var eightBit = 0
        for m in training.matrices {
            let key = "qgalore." + m.site.module
            guard case let .codes(q) = m.weight, let projector = m.projector, let p = projector.codes else { Issue.record("\(key): not Q-GaLore's storage"); continue }
            #expect(try Self.codes(q) == file.floatTensor(key + ".codes").array, "\(key): INT8 codes")
            #expect(maxAbsDifference(Tensor(shape: [q.scales.count], values: q.scales), try file.floatTensor(key + ".scales")) <= 1e-9, "\(key): scales")
            #expect(try q.zeros == file.floatTensor(key + ".zeros").array, "\(key): zero points")
            #expect(maxAbsDifference(q.dequantized(), try file.floatTensor(key + ".weight")) <= 1e-6, "\(key): weights")
            #expect(try Self.codes(p) == file.floatTensor(key + ".proj.codes").array, "\(key): INT4 projection codes")
            #expect(try p.zeros == file.floatTensor(key + ".proj.zeros").array, "\(key): projection zero points")
            #expect(try projector.refreshes == file.floatTensor(key + ".refreshes").array.map { Int($0) }, "\(key): refresh iterations")
            #expect(projector.gap == Int(try file.floatTensor(key + ".gap").array[0]), "\(key): gap")
            let queue = try file.floatTensor(key + ".queue").array
            #expect(projector.queue.count == queue.count && zip(projector.queue, queue).allSatisfy { abs($0 - $1) <= 1e-5 }, "\(key): cosines \(projector.queue) vs \(queue)")
            if file.contains(key + ".state1") {
                eightBit += 1
                for k in ["state1", "state2"] { #expect(try state(m.site.weightName + "." + k).array == file.floatTensor(key + "." + k).array, "\(key): \(k) codes") }
                for k in ["absmax1", "absmax2"] {
                    #expect(maxAbsDifference(try state(m.site.weightName + "." + k), try file.floatTensor(key + "." + k)) <= 1e-6, "\(key): \(k)")
                }
            } else {
                for k in ["exp_avg", "exp_avg_sq"] {
                    #expect(maxAbsDifference(try state(m.site.weightName + "." + k), try file.floatTensor(key + "." + k)) <= 1e-6, "\(key): \(k)")
                }
            }
        }
        #expect(eightBit == 6, "gate, up and down have 8-bit moments (768 values ≥ min_8bit_size 600), the rest fp32")
        #expect(Set(training.matrices.compactMap { $0.projector?.gap }) == [2, 4, 8], "the fixture's schedules diverge")
    }

    /// A checkpoint's optimizer.safetensors, written to a temporary directory.
    static func savedState(_ training: FullRankTraining) throws -> String {
        let dir = NSTemporaryDirectory() + "qgalore-state-\(UUID().uuidString)"
        try training.save(to: dir)
        return dir + "/optimizer.safetensors"
    }

    @Test func tenGaLoreStepsAndFiveFullAdamWStepsMatchTheReference() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        for (method, name) in [(TrainConfig.Method.galore, "galore"), (.full, "full")] {
            let (model, training) = try Self.training(method, file: file)
            Self.expectLosses(try Self.run(model, training, method: name, file: file), try file.floatTensor("\(name).losses").array, name)
            for m in training.matrices {
                let key = "\(name)." + m.site.module
                // fp32 singular vectors differ between LAPACK builds by about ε/(relative gap between
                // σ_r and σ_r+1), which is down to 0.3 % in this run: GaLore's fp32 P carries that
                // into its updates and, through the activations, into every layer's later
                // gradients (up to 6e-6 here, 2 % of one step's update). Q-GaLore's 4-bit P rounds
                // it away: its weights match to 1e-6 and its codes exactly.
                let error = maxAbsDifference(m.weight.values, try file.floatTensor(key + ".weight"))
                #expect(error <= (method == .full ? 1e-6 : 1e-5), "\(key): weights within \(error)")
                if let projector = m.projector {
                    #expect(projector.codes == nil)
                    #expect(try projector.refreshes == file.floatTensor(key + ".refreshes").array.map { Int($0) }, "\(key): refresh iterations")
                    #expect(projector.gap == Int(try file.floatTensor(key + ".gap").array[0]), "\(key): gap")
                }
            }
        }
    }
}

/// method q-galore / galore / full in the training loop, on the Workspace's tiny model.
struct QGaLoreTrainerTests {
    static func yaml(_ ws: Workspace, _ extra: String = "") -> String {
        """
        model: \(ws.root)/model
        output_dir: \(ws.root)/run
        method: q-galore
        data: {train: \(ws.root)/train.jsonl, valid: \(ws.root)/valid.jsonl}
        qgalore: {rank: 4, update_proj_gap: 2, queue_size: 2}
        train: {seq_len: 64, batch_size: 2, grad_accum: 1, max_steps: 6, lr: 0.01, warmup: 1, schedule: linear}
        eval: {every: 3, batches: 2}
        checkpoint: {every: 2, keep: 2}
        \(extra)
        """
    }

    @Test func aRunEndsWithAFullModelThatComputesWhatTrainingLastComputed() throws {
        let ws = try Workspace()
        for (method, dtype) in [("q-galore", "bf16"), ("q-galore", "f32"), ("galore", "f32"), ("full", "f32")] {
            var overrides = ["method=\(method)", "output_dtype=\(dtype)", "output_dir=\(ws.root)/run-\(method)-\(dtype)"]
            if method != "q-galore" { overrides += ["qgalore.rank=4"] }
            if method == "full" { overrides = overrides.filter { !$0.hasPrefix("qgalore") } }
            let yaml = method == "full" ? Self.yaml(ws).replacingOccurrences(of: "qgalore: {rank: 4, update_proj_gap: 2, queue_size: 2}", with: "") : Self.yaml(ws)
            let trainer = try Trainer(config: try TrainConfig(yaml: yaml, overrides: overrides))
            let full = try #require(trainer.fullRank)
            #expect(full.parameterCount == 2 * (32 * 32 * 2 + 16 * 32 * 2 + 48 * 32 * 3))
            if method == "q-galore" {
                #expect(trainer.model.layers.allSatisfy { $0.linears.allSatisfy { $0.1 is GroupQuantizedLinear } })
            }
            let before = try trainer.evaluate(trainer.valid!).mean
            #expect(try trainer.run() == .finished)
            let trained = try trainer.evaluate(trainer.valid!).mean
            #expect(trained < before, "\(method): validation loss \(before) → \(trained)")
            let directory = trainer.config.outputDir + "/model"
            #expect(!FileManager.default.fileExists(atPath: trainer.config.outputDir + "/adapter_model.safetensors"))
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) as! [String: Any]
            #expect(config["torch_dtype"] as? String == (dtype == "bf16" ? "bfloat16" : "float32"))
            #expect(FileManager.default.fileExists(atPath: directory + "/tokenizer.json"))
            let file = try SafeTensorsFile(path: directory + "/model.safetensors")
            #expect(try file.entry("model.layers.1.mlp.down_proj.weight").dtype == (dtype == "bf16" ? .bf16 : .f32))
            // Loaded back, the model computes the trained loss (to bf16's rounding of the weights).
            let loaded = try LlamaModel(directory: directory)
            let batch = BatchPlan(examples: trainer.valid!.examples, batchSize: 2, seqLen: 64, packing: false, pad: 2, seed: 0).batches(epoch: 0, shuffle: false)[0]
            let mine = trainer.model.loss(tokens: batch.tokens, labels: batch.labels).mean, theirs = loaded.loss(tokens: batch.tokens, labels: batch.labels).mean
            #expect(abs(mine - theirs) <= (dtype == "bf16" ? 1e-2 : 1e-6) * mine, "\(method) \(dtype): loss \(mine) in training, \(theirs) loaded")
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trainer.config.outputDir + "/summary.json"))) as! [String: Any]
            #expect(summary["model"] as? String == directory && (summary["state_bytes"] as? Int ?? 0) > 0)
        }
    }

    /// Saved before the first step (Ctrl-C during the first validation) or after one, the state
    /// loads into a fresh model and continues with the same codes and schedules.
    @Test func stateSavedAtAnyStepContinuesTheSame() throws {
        let ws = try Workspace()
        let c = try TrainConfig(yaml: Self.yaml(ws))
        var rng = SeededGenerator(seed: 3)
        let tokens = (0..<3).map { _ in (0..<2).map { _ in (0..<24).map { _ in Int(rng.next() % 1200) } } }
        func fresh() throws -> (LlamaModel, FullRankTraining) {
            let model = try LlamaModel(directory: ws.root + "/model")
            return (model, try FullRankTraining(model: model, config: c))
        }
        func step(_ t: (LlamaModel, FullRankTraining), _ s: Int) throws -> Double {
            var dropout = SeededGenerator(seed: 0)
            t.1.beginStep(learningRate: 0.01)
            let loss = t.0.accumulateGradients(tokens: tokens[s], labels: tokens[s], normalizer: 46, into: t.1, rng: &dropout).mean
            _ = try t.1.finishStep()
            return loss
        }
        let straight = try fresh()
        let atZero = try fresh(), atOne = try fresh()
        try straight.1.save(to: ws.root + "/state-0")
        let first = try step(straight, 0)
        try straight.1.save(to: ws.root + "/state-1")
        let rest = [try step(straight, 1), try step(straight, 2)]
        try atZero.1.load(from: ws.root + "/state-0", step: 0)
        try atOne.1.load(from: ws.root + "/state-1", step: 1)
        #expect(try [step(atZero, 0), step(atZero, 1), step(atZero, 2)] == [first] + rest)
        #expect(try [step(atOne, 1), step(atOne, 2)] == rest)
        for other in [atZero.1, atOne.1] {
            for (a, b) in zip(straight.1.matrices, other.matrices) {
                guard case let .codes(x) = a.weight, case let .codes(y) = b.weight else { Issue.record("not codes"); continue }
                #expect(x.codes == y.codes && x.scales == y.scales && a.projector?.refreshes == b.projector?.refreshes && a.projector?.gap == b.projector?.gap)
            }
        }
    }

    @Test func badSettingsAreNamedBeforeAnythingStarts() throws {
        let ws = try Workspace()
        let yaml = Self.yaml(ws)
        func refused(_ overrides: [String], _ expected: ConfigError) {
            #expect(throws: expected) { _ = try TrainConfig(yaml: yaml, overrides: overrides) }
        }
        refused(["qgalore.update_proj_gap=0"], .badValue(key: "qgalore.update_proj_gap", detail: "must be in 1...100000000 (got 0)"))
        refused(["qgalore.weight_bits=6"], .badValue(key: "qgalore.weight_bits", detail: "is 6; Q-GaLore keeps weights in 8 or 4 bits"))
        refused(["qgalore.proj_bits=3"], .badValue(key: "qgalore.proj_bits", detail: "is 3; projections are kept in 4 or 8 bits"))
        refused(["qgalore.weight_group_size=255"], .badValue(key: "qgalore.weight_group_size", detail: "is 255; it must be even (two 4-bit codes share a byte)"))
        refused(["train.grad_accum=2"], .badValue(key: "train.grad_accum", detail: "must be 1 with method q-galore (each matrix is updated as its gradient arrives in the backward pass)"))
        refused(["train.max_grad_norm=1"], .badValue(key: "train.max_grad_norm", detail: "must be null or 0 with method q-galore (each matrix is updated during the backward pass, before a global norm exists)"))
        refused(["lora.rank=8"], .badValue(key: "lora.rank", detail: "applies only with method lora"))
        refused(["method=galore", "qgalore.weight_bits=4"], .badValue(key: "qgalore.weight_bits", detail: "applies only with method q-galore"))
        refused(["method=lora"], .badValue(key: "qgalore.rank", detail: "applies only with method galore or q-galore"))
        refused(["method=lora", "qgalore.rank=128", "qgalore.update_proj_gap=200", "qgalore.queue_size=5", "output_dtype=f16"],
                .badValue(key: "output_dtype", detail: "applies only with method full, galore or q-galore"))
        // The reference's defaults where the file says nothing; what it says is kept.
        let c = try TrainConfig(yaml: yaml.replacingOccurrences(of: "lr: 0.01, ", with: ""))
        #expect(c.lr == 1e-4 && c.adam.beta1 == 0.9 && c.adam.beta2 == 0.95 && c.optimizer == .adamw8bit && c.maxGradNorm == nil)
        #expect(c.qgalore.scale == 0.25 && c.qgalore.projBits == 4 && c.qgalore.weightBits == 8 && c.qgalore.stochasticRounding && c.qgalore.gammaProj == 2)
        #expect(try TrainConfig(yaml: yaml).lr == 0.01)
        let full = try TrainConfig(yaml: yaml.replacingOccurrences(of: "qgalore: {rank: 4, update_proj_gap: 2, queue_size: 2}", with: ""), overrides: ["method=full"])
        #expect(full.adam.beta2 == 0.999 && full.optimizer == .adamw && full.maxGradNorm == nil)
        // A rank the model's matrices cannot take, before any work.
        #expect(throws: ConfigError.badValue(key: "qgalore.rank", detail: "is 16, not below min(m, n) = 16 of model.layers.0.self_attn.k_proj.weight [16, 32]")) {
            _ = try Trainer(config: try TrainConfig(yaml: yaml, overrides: ["qgalore.rank=16"]))
        }
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/run"))
    }
}
