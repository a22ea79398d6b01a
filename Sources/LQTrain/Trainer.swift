import CKernels
import Foundation
import LQDistributed
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// Where a distillation's teacher distribution comes from in a run.
public enum TeacherSource {
    case live(LlamaModel)
    case cached(TeacherCache)
}

/// Why a run stopped early.
public enum TrainingError: Error, CustomStringConvertible {
    /// `cause`: where the first value that is not finite appeared, when it could be found.
    case nonFinite(step: Int, loss: Double, lastCheckpoint: String?, cause: String?)
    case noCheckpoint(directory: String)
    case badCheckpoint(path: String, detail: String)
    case adapterInit(path: String, detail: String)
    case teacherMismatch(path: String, detail: String)
    case l4qBase(path: String, detail: String)
    case fullRankBase(path: String, detail: String)

    public var description: String {
        switch self {
        case let .nonFinite(step, loss, last, cause):
            let value = loss.isNaN ? "NaN" : "\(loss)"
            return (loss.isFinite ? "a gradient became not finite (norm \(value))" : "the loss became \(value)") + " at step \(step); stopped without updating"
                + (cause.map { "; first not finite: \($0)" } ?? "")
                + (last.map { " (last good checkpoint: \($0))" } ?? " (no checkpoint was written yet)")
        case let .teacherMismatch(path, detail): return "distill.teacher \(path): \(detail)"
        case let .l4qBase(path, detail): return "l4q.bits on \(path): \(detail)"
        case let .fullRankBase(path, detail): return "method on \(path): \(detail)"
        case let .noCheckpoint(directory): return "\(directory): no checkpoint-N directory to resume from"
        case let .badCheckpoint(path, detail): return "\(path): \(detail)"
        case let .adapterInit(path, detail): return "\(path): \(detail)"
        }
    }
}

/// What one optimizer step did.
public struct StepReport: Sendable {
    public var step: Int, totalSteps: Int
    public var loss: Double, learningRate: Double, gradientNorm: Double
    public var tokens: Int, targets: Int
    public var seconds: Double, tokensPerSecond: Double, elapsed: Double
    public var residentBytes: Int
    /// With a teacher: the step's KL (per sequence, as the loss weighs it) and cross-entropy (per target).
    public var divergence: Double? = nil, crossEntropy: Double? = nil
    /// Steps skipped so far because their loss was not finite.
    public var skippedSteps = 0
}

/// The training loop of `lqlora finetune`: micro-batches with gradient accumulation, clipping,
/// AdamW, a warmup schedule, validation, atomic checkpoints that resume bit for bit, a metrics
/// log and a final PEFT adapter. Progress goes to the callbacks; the caller draws it.
public final class Trainer {
    public let config: TrainConfig
    public let model: LlamaModel
    /// INT2.1 / LREC's dense teacher (distill.teacher): run on each micro-batch, or read from its cache.
    public private(set) var teacher: TeacherSource?
    /// The adapters (LoRA, L4Q) and their optimizer; empty with a full-rank method.
    public let parameters: AdapterParameters
    public let optimizer: any Optimizer
    /// method full / galore / q-galore: the projections themselves, updated inside the backward pass.
    public let fullRank: FullRankTraining?
    public let train: Dataset
    public let valid: Dataset?
    public let plan: BatchPlan
    public let totalSteps: Int
    public let schedule: LearningRateSchedule
    public private(set) var step = 0
    var epoch = 0, batchIndex = 0
    var epochBatches: [Batch] = []
    var dropoutRNG: SeededGenerator
    var history: [(step: Int, loss: Double)] = [], validHistory: [(step: Int, loss: Double)] = []
    public private(set) var lastCheckpoint: String?
    var stepSpeeds: [Double] = [], tokensSeen = 0
    public private(set) var skippedSteps = 0
    var consecutiveSkips = 0
    /// Resident memory once the model, its training state and the data are ready (before any step).
    public private(set) var setupResidentBytes = 0
    /// l4q.format gptq: what rounding the zero points to integers did to the model written.
    public internal(set) var zeroPointRounding: ZeroPointRounding?

    public var onStep: (StepReport) -> Void = { _ in }
    public var onEvaluation: (_ step: Int, _ loss: TokenLoss) -> Void = { _, _ in }
    public var onCheckpoint: (String) -> Void = { _ in }
    /// Polled between steps (Ctrl-C sets it): the run saves a checkpoint and returns. In a
    /// data-parallel job every rank stops when any rank's says so.
    public var shouldStop: () -> Bool = { false }
    /// The ranks training together (one process unless mpirun started several): each runs its share
    /// of every step's micro-batches; rank 0 alone evaluates and writes.
    public let communicator: any Communicator
    var writes: Bool { communicator.isRoot }

    public init(config: TrainConfig, communicator: any Communicator = SingleProcess(), log: (String) -> Void = { _ in }) throws {
        try DataParallel.check(config, ranks: communicator.size)
        self.config = config
        self.communicator = communicator
        let model = try LlamaModel(directory: config.model)
        self.model = model
        if let path = config.teacher {
            let vocab = try LlamaConfig(directory: path).vocabSize
            guard vocab == model.config.vocabSize else {
                throw TrainingError.teacherMismatch(path: path, detail: "has a vocabulary of \(vocab) tokens, the student \(config.model) \(model.config.vocabSize)")
            }
        }
        var rng = SeededGenerator(seed: UInt64(config.seed))
        fullRank = config.method.trainsFullRank ? try FullRankTraining(model: model, config: config) : nil
        if fullRank != nil {
            parameters = AdapterParameters(names: [], values: [])
        } else if config.l4qBits != nil {
            parameters = try Self.attachL4Q(to: model, config: config, rng: &rng)
        } else if let initPath = config.adapterInit {
            let adapterConfig = try model.loadAdapter(directory: initPath)
            if adapterConfig.rank != config.rank || adapterConfig.alpha != config.alpha {
                log("adapter_init \(initPath): rank \(adapterConfig.rank), alpha \(adapterConfig.alpha) (taken from the adapter, not lora.rank/lora.alpha)")
            }
            parameters = AdapterParameters(model: model, config: adapterConfig, dropout: Float(config.dropout))
        } else {
            let adapterConfig = AdapterConfig(rank: config.rank, alpha: config.alpha, targetModules: config.targets, useRSLoRA: config.rsLoRA)
            parameters = AdapterParameters.attachFresh(to: model, config: adapterConfig, dropout: Float(config.dropout), rng: &rng)
        }
        dropoutRNG = SeededGenerator(seed: UInt64(config.seed) &+ 0x5EED)
        optimizer = config.makeOptimizer(for: parameters)

        let tokenizer = try loadTokenizer(directory: config.model, modelVocabularySize: model.config.vocabSize)
        let eos = model.config.eosTokenIDs.first ?? 0
        let formatter = ExampleFormatter(tokenizer: tokenizer, eos: eos, chat: ChatTemplate.of(directory: config.model), maskPrompt: config.maskPrompt)
        train = try Dataset(path: config.trainData, format: config.format, formatter: formatter, seqLen: config.seqLen, skipInvalid: config.skipInvalid)
        valid = try config.validData.map { try Dataset(path: $0, format: config.format, formatter: formatter, seqLen: config.seqLen, skipInvalid: config.skipInvalid) }
        plan = BatchPlan(examples: train.examples, batchSize: config.batchSize, seqLen: config.seqLen, packing: config.packing, pad: eos, seed: config.seed)
        let perEpoch = max(1, (plan.batches(epoch: 0).count + config.gradAccum - 1) / config.gradAccum)
        totalSteps = config.maxSteps ?? max(1, Int((config.epochs! * Double(perEpoch)).rounded(.up)))
        schedule = LearningRateSchedule(kind: config.schedule, peak: config.lr, warmup: config.warmupSteps(total: totalSteps), total: totalSteps)
        if let path = config.teacher {
            if let directory = config.teacherCache {
                teacher = .cached(try TeacherCache.open(directory: directory, teacher: path, topK: config.cacheTopK, vocab: model.config.vocabSize,
                                                        sequences: sequencesSeen(), loadTeacher: { try LlamaModel(directory: path) }, log: log))
            } else {
                teacher = .live(try LlamaModel(directory: path))
            }
        }
        setupResidentBytes = MemoryUsage.resident()
    }

    /// Every distinct sequence (its real tokens) that the run's steps and validations will read:
    /// whole epochs, so that skipped steps stay inside the cache.
    func sequencesSeen() -> [[Int]] {
        let perEpoch = max(1, plan.batches(epoch: 0).count)
        let epochs = (totalSteps * config.gradAccum + perEpoch - 1) / perEpoch + 1
        var batches = (0..<epochs).flatMap { plan.batches(epoch: $0) }
        if let valid { batches += validationPlan(valid).batches(epoch: 0, shuffle: false).prefix(config.evalBatches) }
        var seen = Set<[Int]>(), out: [[Int]] = []
        for batch in batches {
            for (seq, n) in zip(batch.tokens, batch.lengths) where seen.insert(Array(seq[0..<n])).inserted { out.append(Array(seq[0..<n])) }
        }
        return out
    }

    // MARK: - The loop

    public enum Outcome: Equatable { case finished, interrupted(step: Int) }

    public func run() throws -> Outcome {
        let metrics: MetricsLog?
        if writes {
            try FileManager.default.createDirectory(atPath: config.outputDir, withIntermediateDirectories: true)
            try Data(config.yaml().utf8).writeAtomically(to: config.outputDir + "/config.yaml")
            metrics = try MetricsLog(path: config.outputDir + "/metrics.jsonl", keepingThrough: step)
        } else {
            metrics = nil
        }
        let parallel = DataParallel(communicator: communicator)
        let start = Date()
        if step == 0, let valid, writes {  // the starting point, so the log shows what training changed
            let v = try evaluate(valid)
            validHistory.append((0, v.mean))
            try metrics?.append(validationRecord(step: 0, v))
            onEvaluation(0, v)
        }
        while step < totalSteps {
            if communicator.any(shouldStop()) {
                if writes {
                    try saveCheckpoint()
                    try writePlot()
                }
                return .interrupted(step: step)
            }
            let stepStart = Date()
            if config.l4qBits != nil { setQuantizing(forStep: step) }
            let lr = schedule.rate(at: step)
            parameters.zeroGradients()
            fullRank?.beginStep(learningRate: lr)
            let sink: any GradientSink = fullRank ?? parameters
            let micro = (0..<config.gradAccum).map { _ in nextBatch() }
            let normalizer = max(1, micro.reduce(0) { $0 + $1.targets }), sequences = micro.reduce(0) { $0 + $1.tokens.count }
            func accumulate(_ batch: Batch, _ rng: inout SeededGenerator) throws -> TokenLoss {
                if let objective = try distillation(batch, sequences: sequences, targets: normalizer) {
                    return model.accumulateGradients(tokens: batch.tokens, objective: objective, into: sink,
                                                     checkpointing: config.gradCheckpoint, rng: &rng)
                }
                return model.accumulateGradients(tokens: batch.tokens, labels: batch.labels, normalizer: normalizer, into: sink,
                                                 checkpointing: config.gradCheckpoint, rng: &rng)
            }
            var loss = TokenLoss()
            if communicator.size > 1 {
                loss = try parallel.step(micro, model: model, parameters: parameters, rng: &dropoutRNG, accumulate: accumulate)
            } else {
                for batch in micro { loss += try accumulate(batch, &dropoutRNG) }
            }
            let crossEntropy = loss.sum / Double(normalizer), divergence = loss.divergence / Double(sequences)
            let mean = teacher == nil ? crossEntropy : config.klWeight * divergence + config.ceWeight * crossEntropy
            // A gradient that is not finite under a finite loss is skipped like a loss that is not
            // (a full-rank method saw the loss before any gradient and updated nothing; its
            // gradients are checked as they arrive).
            let adapterNorm = fullRank == nil && mean.isFinite ? parameters.gradientNorm() : 0
            guard mean.isFinite, adapterNorm.isFinite else {
                // As lrec.py does: the step is skipped (its batches consumed, no update) and counted.
                skippedSteps += 1
                consecutiveSkips += 1
                guard consecutiveSkips <= config.maxSkippedSteps else {
                    throw TrainingError.nonFinite(step: step + 1, loss: mean.isFinite ? adapterNorm : mean, lastCheckpoint: lastCheckpoint,
                                                  cause: nonFiniteCause(micro, lossIsFinite: mean.isFinite))
                }
                try metrics?.append(["step": step + 1, "skipped": true, "skipped_steps": skippedSteps])
                continue
            }
            consecutiveSkips = 0
            let norm: Double
            if let fullRank {
                norm = try fullRank.finishStep()  // the updates happened in the backward pass
            } else {
                norm = config.maxGradNorm.map { $0 > 0 ? clipGradientNorm(parameters, maxNorm: $0, norm: adapterNorm) : adapterNorm } ?? adapterNorm
                optimizer.update(parameters, learningRate: lr)
                try parallel.checkAgreement(parameters, step: step + 1)
            }
            // The step's activations are free again: their pages go back to the system, so the next
            // step's peak is what it needs rather than that plus what malloc kept fragmented.
            lq_release_free_memory()
            step += 1
            let seconds = Date().timeIntervalSince(stepStart), tokens = micro.reduce(0) { $0 + $1.tokenCount }
            let report = StepReport(step: step, totalSteps: totalSteps, loss: mean, learningRate: lr, gradientNorm: norm, tokens: tokens,
                                    targets: loss.targets, seconds: seconds, tokensPerSecond: Double(tokens) / max(seconds, 1e-9),
                                    elapsed: Date().timeIntervalSince(start), residentBytes: MemoryUsage.resident(),
                                    divergence: teacher == nil ? nil : divergence, crossEntropy: teacher == nil ? nil : crossEntropy,
                                    skippedSteps: skippedSteps)
            history.append((step, mean))
            stepSpeeds.append(report.tokensPerSecond)
            tokensSeen += tokens
            var record: [String: Any] = ["step": step, "loss": mean, "lr": lr, "grad_norm": norm, "tokens": tokens, "targets": loss.targets,
                                         "tokens_per_s": report.tokensPerSecond, "seconds": seconds, "rss_bytes": report.residentBytes]
            if teacher != nil {
                record["kl"] = divergence
                record["kl_per_token"] = loss.meanDivergence
                record["ce"] = crossEntropy
            }
            try metrics?.append(record)
            onStep(report)
            if let valid, writes, (config.evalEvery > 0 && step % config.evalEvery == 0) || step == totalSteps {
                let v = try evaluate(valid)
                validHistory.append((step, v.mean))
                try metrics?.append(validationRecord(step: step, v))
                onEvaluation(step, v)
            }
            if config.checkpointEvery > 0 && step % config.checkpointEvery == 0 && step < totalSteps {
                if writes { try saveCheckpoint() } else { lastCheckpoint = config.outputDir + "/checkpoint-\(step)" }  // rank 0's, for messages
            }
        }
        guard writes else { return .finished }
        var summaryExtras: [String: Any] = [:]
        if let fullRank {
            summaryExtras["model"] = try writeFullModel()
            summaryExtras["state_bytes"] = fullRank.stateBytes
        } else if config.l4qBits != nil {
            setQuantizing(forStep: step)
            summaryExtras["quantized_model"] = try writeQuantizedModel()
        } else {
            try parameters.save(to: config.outputDir, base: config.model, dropout: config.dropout)
        }
        try writePlot()
        let speeds = stepSpeeds.dropFirst().sorted()  // the first step warms caches and allocations
        var summary: [String: Any] = ["steps": step, "seconds": Date().timeIntervalSince(start), "tokens": tokensSeen,
                                      "tokens_per_s_median": speeds.isEmpty ? stepSpeeds.first ?? 0 : speeds[speeds.count / 2],
                                      "peak_rss_bytes": MemoryUsage.peak(), "setup_rss_bytes": setupResidentBytes, "final_train_loss": history.last?.loss ?? Double.nan,
                                      "trainable_parameters": fullRank?.parameterCount ?? parameters.parameterCount, "skipped_steps": skippedSteps]
        if let v = validHistory.last { summary["final_val_loss"] = v.loss; summary["final_val_ppl"] = exp(v.loss) }
        if let v = validHistory.first { summary["initial_val_loss"] = v.loss }
        summary.merge(summaryExtras) { $1 }
        try Data(JSONText.serialize(summary).utf8).writeAtomically(to: config.outputDir + "/summary.json")
        return .finished
    }

    func nextBatch() -> Batch {
        if epochBatches.isEmpty || batchIndex >= epochBatches.count {
            if !epochBatches.isEmpty {
                epoch += 1
                batchIndex = 0
            }
            epochBatches = plan.batches(epoch: epoch)
        }
        defer { batchIndex += 1 }
        return epochBatches[batchIndex]
    }

    /// The distillation objective of one micro-batch when there is a teacher (its logits computed
    /// now, for this batch only), with the step's divisors.
    func distillation(_ batch: Batch, sequences: Int, targets: Int) throws -> Distillation? {
        let source: any Teacher
        switch teacher {
        case nil: return nil
        case let .live(model)?: source = LiveTeacher(model: model, tokens: batch.tokens)
        case let .cached(cache)?:
            try cache.select(tokens: batch.tokens, lengths: batch.lengths)
            source = cache
        }
        return Distillation(labels: batch.labels, lengths: batch.lengths, vocabularySize: model.config.vocabSize, teacher: source,
                            klWeight: config.klWeight, ceWeight: config.ceWeight, sequences: sequences, targets: targets)
    }

    func validationPlan(_ data: Dataset) -> BatchPlan {
        BatchPlan(examples: data.examples, batchSize: config.batchSize, seqLen: config.seqLen, packing: config.packing, pad: plan.pad, seed: 0)
    }

    /// Loss over the first eval.batches validation batches (fixed order, no dropout): the
    /// cross-entropy, and with a teacher also the KL to it.
    public func evaluate(_ data: Dataset) throws -> TokenLoss {
        var total = TokenLoss()
        for batch in validationPlan(data).batches(epoch: 0, shuffle: false).prefix(config.evalBatches) {
            if let objective = try distillation(batch, sequences: 1, targets: 1) {
                total += model.loss(tokens: batch.tokens, objective: objective)
            } else {
                total += model.loss(tokens: batch.tokens, labels: batch.labels)
            }
        }
        return total
    }

    func validationRecord(step: Int, _ v: TokenLoss) -> [String: Any] {
        var record: [String: Any] = ["step": step, "val_loss": v.mean, "val_ppl": exp(v.mean), "val_targets": v.targets]
        if teacher != nil { record["val_kl_per_token"] = v.meanDivergence }
        return record
    }

    /// Where a step's first value that is not finite came from: a trained parameter, a gradient,
    /// or the first activation of the forward pass over one of its batches.
    func nonFiniteCause(_ micro: [Batch], lossIsFinite: Bool) -> String? {
        let trained = fullRank.map { f in f.matrices.map { ($0.site.weightName, $0.weight.values) } } ?? Array(zip(parameters.names, parameters.values))
        if let (name, _) = trained.first(where: { $0.1.buffer.contains { !$0.isFinite } }) { return "the trained parameter \(name)" }
        if lossIsFinite, let (name, _) = zip(parameters.names, parameters.grads).first(where: { $0.1.buffer.contains { !$0.isFinite } }) {
            return "the gradient of \(name)"
        }
        for batch in micro { if let site = model.firstNonFinite(in: batch.tokens) { return site } }
        return nil
    }

    // MARK: - Checkpoints

    /// output_dir/checkpoint-STEP: the adapter (PEFT layout) or a full-rank method's weights,
    /// projections and optimizer state; optimizer state, data position, RNG state and config;
    /// written under a temporary name and renamed, then the oldest beyond `keep` go.
    public func saveCheckpoint() throws {
        let dir = config.outputDir + "/checkpoint-\(step)", temp = dir + ".partial"
        let fm = FileManager.default
        try? fm.removeItem(atPath: temp)
        do { try writeCheckpoint(to: temp) } catch {
            try? fm.removeItem(atPath: temp)
            throw error
        }
        // A checkpoint of the same step (saved again on Ctrl-C) is exchanged for the new one.
        try AtomicDirectory.replace(dir, with: temp)
        lastCheckpoint = dir
        for old in Self.checkpoints(in: config.outputDir).dropLast(config.checkpointKeep) {
            // Renamed out of the complete checkpoints' names first: a kill mid-deletion leaves a
            // .partial (removed by the next run), never a half-deleted checkpoint-N.
            let doomed = config.outputDir + "/checkpoint-\(old).partial"
            try? fm.removeItem(atPath: doomed)
            if (try? fm.moveItem(atPath: config.outputDir + "/checkpoint-\(old)", toPath: doomed)) != nil { try? fm.removeItem(atPath: doomed) }
        }
        onCheckpoint(dir)
    }

    private func writeCheckpoint(to temp: String) throws {
        if let fullRank {
            try fullRank.save(to: temp)
        } else {
            try parameters.save(to: temp, base: config.model, dropout: config.dropout)
            try SafeTensorsWriter.write(optimizer.stateTensors(names: parameters.names), to: temp + "/optimizer.safetensors")
        }
        let state: [String: Any] = [
            "step": step, "epoch": epoch, "batch_index": batchIndex, "optimizer_step": fullRank?.step ?? optimizer.step, "skipped_steps": skippedSteps,
            "dropout_rng": dropoutRNG.state.map { String($0) }, "total_steps": totalSteps,
            "train_history": history.map { [$0.step, $0.loss] as [Any] }, "valid_history": validHistory.map { [$0.step, $0.loss] as [Any] },
        ]
        try Data(JSONText.serialize(state).utf8).writeAtomically(to: temp + "/trainer_state.json")
        try Data(config.yaml().utf8).writeAtomically(to: temp + "/config.yaml")
    }

    /// Steps of the complete checkpoints in a directory, ascending.
    public static func checkpoints(in directory: String) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("checkpoint-"), !name.hasSuffix(".partial") else { return nil }
            return Int(name.dropFirst("checkpoint-".count))
        }.sorted()
    }

    /// Continues from the newest checkpoint in `directory` (in a data-parallel job, rank 0's,
    /// whose files it sends to the other ranks).
    public func resume(from directory: String) throws {
        if communicator.size > 1 {
            let shared = try DataParallel(communicator: communicator).shareCheckpoint(in: directory)
            defer { shared.cleanup() }
            try resume(checkpoint: shared.local)
            lastCheckpoint = shared.original
            return
        }
        guard let last = Self.checkpoints(in: directory).last else { throw TrainingError.noCheckpoint(directory: directory) }
        try resume(checkpoint: directory + "/checkpoint-\(last)")
    }

    /// Continues from the checkpoint directory `dir`.
    func resume(checkpoint dir: String) throws {
        let statePath = dir + "/trainer_state.json"
        guard let data = FileManager.default.contents(atPath: statePath),
              let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let step = state["step"] as? Int, let epoch = state["epoch"] as? Int, let batchIndex = state["batch_index"] as? Int,
              let optimizerStep = state["optimizer_step"] as? Int, let rngWords = state["dropout_rng"] as? [String]
        else { throw TrainingError.badCheckpoint(path: statePath, detail: "is missing or incomplete") }
        if let total = state["total_steps"] as? Int, total != totalSteps {
            throw TrainingError.badCheckpoint(path: statePath, detail: "was written for \(total) steps, this configuration makes \(totalSteps) (the schedule would differ)")
        }
        if let fullRank {
            try fullRank.load(from: dir, step: optimizerStep)
        } else {
            try parameters.load(from: dir)
            try optimizer.load(try SafeTensorsFile(path: dir + "/optimizer.safetensors"), names: parameters.names, step: optimizerStep)
        }
        self.step = step
        self.epoch = epoch
        self.batchIndex = batchIndex
        skippedSteps = state["skipped_steps"] as? Int ?? 0
        epochBatches = plan.batches(epoch: epoch)
        dropoutRNG.state = rngWords.compactMap { UInt64($0) }
        func pairs(_ key: String) -> [(step: Int, loss: Double)] {
            ((state[key] as? [[Any]]) ?? []).compactMap { pair in
                guard pair.count == 2, let s = pair[0] as? NSNumber, let l = pair[1] as? NSNumber else { return nil }
                return (s.intValue, l.doubleValue)
            }
        }
        history = pairs("train_history")
        validHistory = pairs("valid_history")
        lastCheckpoint = dir
    }

    func writePlot() throws {
        let svg = LossPlot.svg(train: history, valid: validHistory, title: "lqlora finetune: \(config.model)")
        try Data(svg.utf8).writeAtomically(to: config.outputDir + "/loss.svg")
    }
}

/// metrics.jsonl: one JSON object per line, appended as the run goes; on resume, lines after the
/// checkpoint's step are dropped so the log reads as one run.
final class MetricsLog {
    let handle: FileHandle

    init(path: String, keepingThrough step: Int) throws {
        var kept = ""
        if step > 0, let old = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in old.split(separator: "\n") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let s = obj["step"] as? Int, s <= step else { continue }
                kept += line + "\n"
            }
        }
        try Data(kept.utf8).writeAtomically(to: path)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
    }

    func append(_ object: [String: Any]) throws {
        let line = JSONText.serialize(object, indent: 0).replacingOccurrences(of: "\n", with: "") + "\n"
        handle.write(Data(line.utf8))
    }

    deinit { try? handle.close() }
}

/// Resident memory of this process, from /proc (0 where there is none).
public enum MemoryUsage {
    public static func resident() -> Int { field("VmRSS:") }
    public static func peak() -> Int { field("VmHWM:") }

    static func field(_ name: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
}
