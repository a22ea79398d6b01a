import Foundation
import LQFormats
import LQQuant
import Yams

/// A problem with a finetuning configuration, naming the key at fault.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, detail: String)
    case unknownKey(key: String, suggestion: String?)
    case badValue(key: String, detail: String)
    case missing(key: String)

    public var description: String {
        switch self {
        case let .unreadable(path, detail): return "\(path): \(detail)"
        case let .unknownKey(key, suggestion):
            return "unknown key '\(key)'" + (suggestion.map { " (did you mean '\($0)'?)" } ?? "")
        case let .badValue(key, detail): return "'\(key)' \(detail)"
        case let .missing(key): return "'\(key)' is required"
        }
    }
}

/// The settings of `lqlora finetune`. Each key is one row of `schema` (name, property, value type
/// with its range, meaning); the YAML file, `--set key=value` overrides, validation and `--schema`
/// all come from that table.
public struct TrainConfig: Equatable, Sendable {
    public var model = "", adapterInit: String?, outputDir = ""
    /// What trains: LoRA adapters, or the projections themselves (`FullRankTraining`), and the
    /// dtype of the model those methods write.
    public var method = Method.lora, outputDType = OutputDType.bf16
    /// GaLore / Q-GaLore's projection, schedule and storage.
    public var qgalore = QGaLoreSettings()
    public var trainData = "", validData: String?, format = DataFormat.auto, maskPrompt = true, skipInvalid = false
    public var rank = 16, alpha = 32.0, dropout = 0.0, targets = TrainConfig.allTargets, rsLoRA = false
    public var seqLen = 512, batchSize = 4, gradAccum = 4, maxSteps: Int?, epochs: Double?
    public var lr = 2e-4, schedule = LearningRateSchedule.Kind.cosine, warmup = 0.03, maxGradNorm: Double? = 0.3
    /// The optimizer and its hyperparameters (`adam` holds the betas, epsilon and weight decay).
    public var optimizer = OptimizerKind.adamw, adam = AdamW.Settings(), min8BitSize = AdamW8bit.defaultMin8BitSize
    public var seed = 0, packing = false, gradCheckpoint = false
    public var evalEvery = 50, evalBatches = 20
    public var checkpointEvery = 100, checkpointKeep = 2
    /// Consecutive steps whose loss is not finite that are skipped (counted) before the run stops.
    public var maxSkippedSteps = 0
    /// INT2.1 / LREC: the dense teacher and the weights of KL(teacher ‖ student) and CE (lrec.py's defaults).
    public var teacher: String?, klWeight = 1.0, ceWeight = 200.0
    /// A directory caching the teacher's top-k distribution (0: full fp16 logits) for the run's data.
    public var teacherCache: String?, cacheTopK = 64
    /// L4Q: LoRA trained through a learned quantizer of this many bits (nil: plain LoRA), and the
    /// layout of the model it writes.
    public var l4qBits: Int?, l4qGroupSize = 128, l4qWarmupSteps = 0, l4qFormat = GPTQFormat.Layout.lqlora

    public static let allTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public enum DataFormat: String, Sendable, CaseIterable { case auto, text, completion, chat, alpaca }

    /// `method`.
    public enum Method: String, Sendable, CaseIterable { case lora, full, galore, qGalore = "q-galore" }

    /// `output_dtype`.
    public enum OutputDType: String, Sendable, CaseIterable {
        case bf16, f16, f32
        public var dtype: DType {
            switch self {
            case .bf16: return .bf16
            case .f16: return .f16
            case .f32: return .f32
            }
        }
    }

    static let schema: [ConfigKey] = [
        ConfigKey("model", \.model, .string, required: true, help: "base model directory: dense, nf4 or lq-lora output of `lqlora quantize`"),
        ConfigKey("adapter_init", \.adapterInit, ConfigValue.string.optional, help: "PEFT adapter to start from (e.g. the LQ-LoRA initialisation); otherwise A random, B zero"),
        ConfigKey("output_dir", \.outputDir, .string, required: true, help: "where checkpoints, metrics.jsonl, loss.svg and the final adapter go"),
        ConfigKey("method", \.method, .choice, help: "lora: adapters on a frozen base; full: AdamW on the seven projections themselves; galore: GaLore (fp32 weights, gradients projected to qgalore.rank); q-galore: Q-GaLore (8/4-bit weights, 4-bit projections); the last three write output_dir/model"),
        ConfigKey("output_dtype", \.outputDType, .choice, help: "full, galore, q-galore: the dtype of output_dir/model's weights"),
        ConfigKey("data.train", \.trainData, .string, required: true, help: ".jsonl, .jsonl.gz or .txt training data"),
        ConfigKey("data.valid", \.validData, ConfigValue.string.optional, help: "validation data in the same formats"),
        ConfigKey("data.format", \.format, .choice, help: "record layout; auto looks at the first record's fields"),
        ConfigKey("data.mask_prompt", \.maskPrompt, .bool, help: "leave prompts (and non-assistant turns) out of the loss"),
        ConfigKey("data.skip_invalid", \.skipInvalid, .bool, help: "skip records with missing fields (counted) instead of stopping"),
        ConfigKey("lora.rank", \.rank, .int(1...4096), help: "adapter rank r"),
        ConfigKey("lora.alpha", \.alpha, .number(0.0...1e6), help: "scaling numerator: scale = alpha / r (or alpha / √r with rslora)"),
        ConfigKey("lora.dropout", \.dropout, .number(0.0...0.99), help: "dropout on the adapter's input"),
        ConfigKey("lora.targets", \.targets, .list(of: allTargets), help: "projections that get adapters"),
        ConfigKey("lora.rslora", \.rsLoRA, .bool, help: "rank-stabilised scaling alpha / √r"),
        ConfigKey("train.seq_len", \.seqLen, .int(2...1_048_576), help: "tokens per sequence (longer examples are truncated)"),
        ConfigKey("train.batch_size", \.batchSize, .int(1...65536), help: "sequences per micro-batch"),
        ConfigKey("train.grad_accum", \.gradAccum, .int(1...65536), help: "micro-batches per optimizer step"),
        ConfigKey("train.max_steps", \.maxSteps, ConfigValue.int(1...100_000_000).optional, help: "optimizer steps; null: from epochs"),
        ConfigKey("train.epochs", \.epochs, ConfigValue.number(0.0...1e6).optional, help: "passes over the data when max_steps is null"),
        ConfigKey("train.lr", \.lr, .number(0.0...10.0), help: "peak learning rate (galore, q-galore: 1e-4 unless set)"),
        ConfigKey("train.schedule", \.schedule, .choice, help: "learning-rate schedule after warmup"),
        ConfigKey("train.warmup", \.warmup, .number(0.0...1e9), help: "warmup: a fraction of the steps if below 1, else a step count"),
        ConfigKey("train.weight_decay", \.adam.weightDecay, .number(0.0...10.0), help: "decoupled (AdamW) weight decay"),
        ConfigKey("train.max_grad_norm", \.maxGradNorm, ConfigValue.number(0.0...1e9).optional, help: "clip the global gradient norm to this; null or 0: no clipping (full, galore, q-galore: null unless set, and only null or 0)"),
        ConfigKey("train.optimizer", \.optimizer, .choice, help: "fp32 AdamW, or bitsandbytes-style 8-bit blockwise states (galore, q-galore: adamw8bit unless set)"),
        ConfigKey("train.adam_beta1", \.adam.beta1, .number(.halfOpen(0.0..<1.0)), help: "decay of the first moment (torch's betas[0])"),
        ConfigKey("train.adam_beta2", \.adam.beta2, .number(.halfOpen(0.0..<1.0)), help: "decay of the second moment (torch's betas[1]; galore, q-galore: 0.95 unless set)"),
        ConfigKey("train.adam_epsilon", \.adam.epsilon, .number(.above(0.0, atMost: 1.0)), help: "added to √v in the update's denominator"),
        ConfigKey("train.min_8bit_size", \.min8BitSize, .int(0...Int(Int32.max)), help: "adamw8bit: tensors with fewer values keep fp32 states"),
        ConfigKey("train.seed", \.seed, .int(0...Int(Int32.max)), help: "adapter initialisation, data order and dropout"),
        ConfigKey("train.packing", \.packing, .bool, help: "pack examples into full seq_len windows instead of padded, length-grouped batches"),
        ConfigKey("train.grad_checkpoint", \.gradCheckpoint, .bool, help: "keep only block inputs and recompute activations in backward"),
        ConfigKey("train.max_skipped_steps", \.maxSkippedSteps, .int(0...1_000_000), help: "steps with a non-finite loss skipped (no update, counted) before the run stops; 0: stop at the first"),
        ConfigKey("distill.teacher", \.teacher, ConfigValue.string.optional, help: "INT2.1/LREC: dense model whose logits the student learns (KL + CE); null: plain CE"),
        ConfigKey("distill.kl_weight", \.klWeight, .number(0.0...1e9), help: "weight of KL(teacher || student), summed over positions and vocabulary, / sequences"),
        ConfigKey("distill.ce_weight", \.ceWeight, .number(0.0...1e9), help: "weight of the cross-entropy (mean over targets) beside the KL"),
        ConfigKey("distill.teacher_cache", \.teacherCache, ConfigValue.string.optional, help: "directory caching the teacher's distribution of every sequence the run sees (built once, rebuilt when the teacher, top_k or data change); null: the teacher runs on every step"),
        ConfigKey("distill.cache_top_k", \.cacheTopK, .int(0...1_000_000), help: "entries kept per position in the cache (the KL is then the sum over them); 0: full fp16 logits"),
        ConfigKey("l4q.bits", \.l4qBits, ConfigValue.int(2...8).optional, help: "L4Q: train LoRA through a learned uniform quantizer of 2, 3, 4 or 8 bits and write one quantized model (output_dir/model); null: plain LoRA"),
        ConfigKey("l4q.group_size", \.l4qGroupSize, .int(0...1_048_576), help: "L4Q: input columns per learned step and offset; 0: one per output row"),
        ConfigKey("l4q.warmup_steps", \.l4qWarmupSteps, .int(0...100_000_000), help: "L4Q: first steps train A, B against the unquantized W0 + s·B·A"),
        ConfigKey("l4q.format", \.l4qFormat, .choice, help: "L4Q: output_dir/model's layout; lqlora: fp16 fractional zero points, the trained model exactly (lqlora loads it); gptq: AutoGPTQ's v1 layout (transformers loads it), trained on its integer zero points so it too is the trained model exactly"),
        ConfigKey("qgalore.rank", \.qgalore.rank, .int(1...1_048_576), help: "galore, q-galore: rank of the gradient projection (below min(m, n) of every projection)"),
        ConfigKey("qgalore.update_proj_gap", \.qgalore.updateProjGap, .int(1...100_000_000), help: "galore, q-galore: steps between refreshes of a projection (an SVD of the gradient)"),
        ConfigKey("qgalore.scale", \.qgalore.scale, .number(0.0...1e6), help: "galore, q-galore: factor of the update projected back"),
        ConfigKey("qgalore.queue_size", \.qgalore.queueSize, .int(1...1_000_000), help: "galore, q-galore: cosines between consecutive first singular vectors averaged by the lazy refresh"),
        ConfigKey("qgalore.cos_threshold", \.qgalore.cosThreshold, .number(-1.0...1.0), help: "galore, q-galore: once the queue is full and its mean is at least this, a matrix's update_proj_gap grows"),
        ConfigKey("qgalore.gamma_proj", \.qgalore.gammaProj, .number(1.0...1e6), help: "galore, q-galore: the factor update_proj_gap grows by (rounded down)"),
        ConfigKey("qgalore.proj_bits", \.qgalore.projBits, .int(1...64), help: "q-galore: bits of the projection matrices (4 or 8)"),
        ConfigKey("qgalore.proj_group_size", \.qgalore.projGroupSize, .int(1...1_048_576), help: "q-galore: consecutive values of a projection per scale and zero point (even)"),
        ConfigKey("qgalore.weight_bits", \.qgalore.weightBits, .int(1...64), help: "q-galore: bits of the trained weights (8 or 4)"),
        ConfigKey("qgalore.weight_group_size", \.qgalore.weightGroupSize, .int(1...1_048_576), help: "q-galore: consecutive weights per scale and zero point (even)"),
        ConfigKey("qgalore.stochastic_rounding", \.qgalore.stochasticRounding, .bool, help: "q-galore: requantize updated weights by stochastic rounding (streams seeded by train.seed); false: to nearest"),
        ConfigKey("eval.every", \.evalEvery, .int(0...100_000_000), help: "validation every N steps (0: only at the end)"),
        ConfigKey("eval.batches", \.evalBatches, .int(1...100_000_000), help: "validation batches per evaluation"),
        ConfigKey("checkpoint.every", \.checkpointEvery, .int(0...100_000_000), help: "checkpoint every N steps (0: only on interrupt)"),
        ConfigKey("checkpoint.keep", \.checkpointKeep, .int(1...100_000), help: "checkpoints kept; older ones are removed"),
    ]

    public init() {}

    /// Reads a YAML file and applies `key=value` overrides (values parsed as YAML scalars).
    public init(path: String, overrides: [String] = []) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError.unreadable(path: path, detail: "cannot be read")
        }
        try self.init(yaml: text, overrides: overrides, path: path)
    }

    public init(yaml text: String, overrides: [String] = [], path: String = "config") throws {
        let root: Any?
        try YAMLLimits.check(text, path: path)
        do { root = try Yams.load(yaml: text) } catch { throw ConfigError.unreadable(path: path, detail: "is not valid YAML: \(error)") }
        guard let tree = (root ?? [String: Any]()) as? [String: Any] else {
            throw ConfigError.unreadable(path: path, detail: "must be a mapping of keys to values")
        }
        var flat: [String: Any] = [:]
        try Self.flatten(tree, prefix: "", into: &flat)
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { throw ConfigError.badValue(key: o, detail: "override must look like key=value") }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            try Self.check(key: key)
            try YAMLLimits.check(raw, path: "--set \(key)")
            flat[key] = (try? Yams.load(yaml: raw)).flatMap { $0 } ?? (raw.isEmpty ? NSNull() : raw)
        }
        try self.init(flat: flat)
    }

    /// Nested mappings become dotted keys; unknown ones are errors with the nearest known key.
    static func flatten(_ tree: [String: Any], prefix: String, into flat: inout [String: Any]) throws {
        let sections = Set(schema.compactMap { $0.name.split(separator: ".").count > 1 ? String($0.name.split(separator: ".")[0]) : nil })
        for (k, v) in tree {
            let key = prefix + k
            if prefix.isEmpty && sections.contains(k) {
                guard let sub = v as? [String: Any] else { throw ConfigError.badValue(key: key, detail: "must be a mapping") }
                try flatten(sub, prefix: key + ".", into: &flat)
                continue
            }
            try check(key: key)
            flat[key] = v
        }
    }

    static func check(key: String) throws {
        guard !schema.contains(where: { $0.name == key }) else { return }
        throw ConfigError.unknownKey(key: key, suggestion: nearestName(key, schema.map(\.name)))
    }

    init(flat: [String: Any]) throws {
        self.init()
        for key in Self.schema {
            let raw = flat[key.name]
            if key.required && (raw == nil || raw is NSNull) { throw ConfigError.missing(key: key.name) }
            if let raw { try key.read(raw, &self) }
        }
        // The full-rank methods' defaults where the file leaves a key out (the reference's, for GaLore's two).
        if method.trainsFullRank && flat["train.max_grad_norm"] == nil { maxGradNorm = nil }
        if method == .galore || method == .qGalore {
            if flat["train.lr"] == nil { lr = 1e-4 }
            if flat["train.adam_beta2"] == nil { adam.beta2 = 0.95 }
            if flat["train.optimizer"] == nil { optimizer = .adamw8bit }
        }
        if maxSteps == nil && epochs == nil { throw ConfigError.badValue(key: "train.max_steps", detail: "or train.epochs must be set") }
        if let adapterInit, adapterInit.isEmpty { throw ConfigError.badValue(key: "adapter_init", detail: "is empty") }
        let defaults = TrainConfig()
        /// A key changed from its default while the section's switch is off is a mistake, not a no-op.
        func requireSwitch(_ on: Bool, _ condition: String, _ changed: [(String, Bool)]) throws {
            if !on, let key = changed.first(where: \.1)?.0 { throw ConfigError.badValue(key: key, detail: "applies only with \(condition)") }
        }
        try requireSwitch(teacher != nil, "distill.teacher set", [("distill.kl_weight", klWeight != defaults.klWeight), ("distill.ce_weight", ceWeight != defaults.ceWeight),
                                                             ("distill.teacher_cache", teacherCache != nil), ("distill.cache_top_k", cacheTopK != defaults.cacheTopK)])
        try requireSwitch(l4qBits != nil, "l4q.bits set", [("l4q.group_size", l4qGroupSize != defaults.l4qGroupSize),
                                                       ("l4q.warmup_steps", l4qWarmupSteps != defaults.l4qWarmupSteps),
                                                       ("l4q.format", l4qFormat != defaults.l4qFormat)])
        if let bits = l4qBits {
            guard [2, 3, 4, 8].contains(bits) else { throw ConfigError.badValue(key: "l4q.bits", detail: "is \(bits); the uniform storage takes 2, 3, 4 or 8") }
            if dropout > 0 { throw ConfigError.badValue(key: "lora.dropout", detail: "must be 0 with l4q.bits (L4Q trains through the quantizer without adapter dropout)") }
            if adapterInit != nil { throw ConfigError.badValue(key: "adapter_init", detail: "does not apply with l4q.bits (L4Q starts from B = 0, the round-to-nearest model)") }
        }
        if let teacher, teacher.isEmpty { throw ConfigError.badValue(key: "distill.teacher", detail: "is empty") }
        try checkMethod(defaults: defaults, switchedOn: { try requireSwitch($0, $1, $2) })
    }

    /// The keys of the full-rank methods and the LoRA keys they leave out, checked together.
    private func checkMethod(defaults: TrainConfig, switchedOn: (Bool, String, [(String, Bool)]) throws -> Void) throws {
        let q = qgalore, d = defaults.qgalore, galore = method == .galore || method == .qGalore
        try switchedOn(galore, "method galore or q-galore", [
            ("qgalore.rank", q.rank != d.rank), ("qgalore.update_proj_gap", q.updateProjGap != d.updateProjGap), ("qgalore.scale", q.scale != d.scale),
            ("qgalore.queue_size", q.queueSize != d.queueSize), ("qgalore.cos_threshold", q.cosThreshold != d.cosThreshold),
            ("qgalore.gamma_proj", q.gammaProj != d.gammaProj)])
        try switchedOn(method == .qGalore, "method q-galore", [
            ("qgalore.proj_bits", q.projBits != d.projBits), ("qgalore.proj_group_size", q.projGroupSize != d.projGroupSize),
            ("qgalore.weight_bits", q.weightBits != d.weightBits), ("qgalore.weight_group_size", q.weightGroupSize != d.weightGroupSize),
            ("qgalore.stochastic_rounding", q.stochasticRounding != d.stochasticRounding)])
        try switchedOn(method.trainsFullRank, "method full, galore or q-galore", [("output_dtype", outputDType != defaults.outputDType)])
        try switchedOn(method == .lora, "method lora", [
            ("lora.rank", rank != defaults.rank), ("lora.alpha", alpha != defaults.alpha), ("lora.dropout", dropout != defaults.dropout),
            ("lora.targets", targets != defaults.targets), ("lora.rslora", rsLoRA != defaults.rsLoRA), ("adapter_init", adapterInit != nil),
            ("l4q.bits", l4qBits != nil)])
        guard method.trainsFullRank else { return }
        let name = "method \(method.rawValue)"
        if gradAccum != 1 {
            throw ConfigError.badValue(key: "train.grad_accum", detail: "must be 1 with \(name) (each matrix is updated as its gradient arrives in the backward pass)")
        }
        if let norm = maxGradNorm, norm > 0 {
            throw ConfigError.badValue(key: "train.max_grad_norm", detail: "must be null or 0 with \(name) (each matrix is updated during the backward pass, before a global norm exists)")
        }
        guard method == .qGalore else { return }
        if ![8, 4].contains(q.weightBits) { throw ConfigError.badValue(key: "qgalore.weight_bits", detail: "is \(q.weightBits); Q-GaLore keeps weights in 8 or 4 bits") }
        if ![4, 8].contains(q.projBits) { throw ConfigError.badValue(key: "qgalore.proj_bits", detail: "is \(q.projBits); projections are kept in 4 or 8 bits") }
        for (key, size) in [("qgalore.weight_group_size", q.weightGroupSize), ("qgalore.proj_group_size", q.projGroupSize)] where size % 2 != 0 {
            throw ConfigError.badValue(key: key, detail: "is \(size); it must be even (two 4-bit codes share a byte)")
        }
    }

    /// The configuration as nested YAML, every key included; with `help`, each key's meaning as a comment.
    public func yaml(help: Bool = false) -> String {
        var out = "", section = ""
        for key in Self.schema {
            let parts = key.name.split(separator: ".").map(String.init)
            if parts.count == 2 && parts[0] != section {
                section = parts[0]
                out += "\(section):\n"
            }
            let line = (parts.count == 2 ? "  " + parts[1] : parts[0]) + ": " + key.write(self)
            out += help ? line.padding(toLength: max(line.count, 36), withPad: " ", startingAt: 0) + "  # " + (key.required ? "required: " : "") + key.help + "\n" : line + "\n"
        }
        return out
    }

    /// Warmup as a step count for `total` steps.
    public func warmupSteps(total: Int) -> Int { warmup < 1 ? Int((warmup * Double(total)).rounded(.up)) : Int(warmup) }
}

/// One key of the schema: its dotted name, the property it sets and how its value reads and writes.
struct ConfigKey: Sendable {
    let name: String
    let required: Bool
    let help: String
    let read: @Sendable (Any, inout TrainConfig) throws -> Void
    let write: @Sendable (TrainConfig) -> String

    init<V>(_ name: String, _ property: WritableKeyPath<TrainConfig, V> & Sendable, _ value: ConfigValue<V>, required: Bool = false, help: String) {
        self.name = name
        self.required = required
        self.help = help
        read = { raw, config in config[keyPath: property] = try value.decode(raw, name) }
        write = { value.encode($0[keyPath: property]) }
    }
}
