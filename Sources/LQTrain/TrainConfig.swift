import Foundation
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

/// The settings of `lqlora finetune`: one table of keys (type, default, range, meaning) that the
/// YAML file, `--set key=value` overrides and the documentation all come from.
public struct TrainConfig: Equatable, Sendable {
    public var model = "", adapterInit: String?, outputDir = ""
    public var trainData = "", validData: String?, format = DataFormat.auto, maskPrompt = true, skipInvalid = false
    public var rank = 16, alpha = 32.0, dropout = 0.0, targets = TrainConfig.allTargets, rsLoRA = false
    public var seqLen = 512, batchSize = 4, gradAccum = 4, maxSteps: Int?, epochs: Double?
    public var lr = 2e-4, schedule = LearningRateSchedule.Kind.cosine, warmup = 0.03, weightDecay = 0.0, maxGradNorm: Double? = 0.3
    public var optimizer = "adamw", seed = 0, packing = false, gradCheckpoint = false
    public var evalEvery = 50, evalBatches = 20
    public var checkpointEvery = 100, checkpointKeep = 2

    public static let allTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public enum DataFormat: String, Sendable, CaseIterable { case auto, text, completion, chat, alpaca }

    /// One key of the schema.
    struct Key {
        enum Kind { case string, optionalString, int(ClosedRange<Int>), optionalInt(ClosedRange<Int>), double(ClosedRange<Double>),
                    optionalDouble(ClosedRange<Double>), bool, choice([String]), list([String]) }
        let name: String
        let kind: Kind
        let required: Bool
        let help: String
        let apply: (inout TrainConfig, Any?) -> Void
    }

    static let schema: [Key] = [
        Key(name: "model", kind: .string, required: true, help: "base model directory: dense, nf4 or lq-lora output of `lqlora quantize`") { $0.model = $1 as! String },
        Key(name: "adapter_init", kind: .optionalString, required: false, help: "PEFT adapter to start from (e.g. the LQ-LoRA initialisation); otherwise A random, B zero") { $0.adapterInit = $1 as? String },
        Key(name: "output_dir", kind: .string, required: true, help: "where checkpoints, metrics.jsonl, loss.svg and the final adapter go") { $0.outputDir = $1 as! String },
        Key(name: "data.train", kind: .string, required: true, help: ".jsonl, .jsonl.gz or .txt training data") { $0.trainData = $1 as! String },
        Key(name: "data.valid", kind: .optionalString, required: false, help: "validation data in the same formats") { $0.validData = $1 as? String },
        Key(name: "data.format", kind: .choice(DataFormat.allCases.map(\.rawValue)), required: false, help: "record layout; auto looks at the first record's fields") { $0.format = DataFormat(rawValue: $1 as! String)! },
        Key(name: "data.mask_prompt", kind: .bool, required: false, help: "leave prompts (and non-assistant turns) out of the loss") { $0.maskPrompt = $1 as! Bool },
        Key(name: "data.skip_invalid", kind: .bool, required: false, help: "skip records with missing fields (counted) instead of stopping") { $0.skipInvalid = $1 as! Bool },
        Key(name: "lora.rank", kind: .int(1...4096), required: false, help: "adapter rank r") { $0.rank = $1 as! Int },
        Key(name: "lora.alpha", kind: .double(0.0...1e6), required: false, help: "scaling numerator: scale = alpha / r (or alpha / √r with rslora)") { $0.alpha = $1 as! Double },
        Key(name: "lora.dropout", kind: .double(0.0...0.99), required: false, help: "dropout on the adapter's input") { $0.dropout = $1 as! Double },
        Key(name: "lora.targets", kind: .list(allTargets), required: false, help: "projections that get adapters") { $0.targets = $1 as! [String] },
        Key(name: "lora.rslora", kind: .bool, required: false, help: "rank-stabilised scaling alpha / √r") { $0.rsLoRA = $1 as! Bool },
        Key(name: "train.seq_len", kind: .int(2...1_048_576), required: false, help: "tokens per sequence (longer examples are truncated)") { $0.seqLen = $1 as! Int },
        Key(name: "train.batch_size", kind: .int(1...65536), required: false, help: "sequences per micro-batch") { $0.batchSize = $1 as! Int },
        Key(name: "train.grad_accum", kind: .int(1...65536), required: false, help: "micro-batches per optimizer step") { $0.gradAccum = $1 as! Int },
        Key(name: "train.max_steps", kind: .optionalInt(1...100_000_000), required: false, help: "optimizer steps; null: from epochs") { $0.maxSteps = $1 as? Int },
        Key(name: "train.epochs", kind: .optionalDouble(0.0...1e6), required: false, help: "passes over the data when max_steps is null") { $0.epochs = $1 as? Double },
        Key(name: "train.lr", kind: .double(0.0...10.0), required: false, help: "peak learning rate") { $0.lr = $1 as! Double },
        Key(name: "train.schedule", kind: .choice(LearningRateSchedule.Kind.allCases.map(\.rawValue)), required: false, help: "learning-rate schedule after warmup") { $0.schedule = LearningRateSchedule.Kind(rawValue: $1 as! String)! },
        Key(name: "train.warmup", kind: .double(0.0...1e9), required: false, help: "warmup: a fraction of the steps if below 1, else a step count") { $0.warmup = $1 as! Double },
        Key(name: "train.weight_decay", kind: .double(0.0...10.0), required: false, help: "decoupled (AdamW) weight decay") { $0.weightDecay = $1 as! Double },
        Key(name: "train.max_grad_norm", kind: .optionalDouble(0.0...1e9), required: false, help: "clip the global gradient norm to this; null or 0: no clipping") { $0.maxGradNorm = $1 as? Double },
        Key(name: "train.optimizer", kind: .choice(["adamw", "adamw8bit"]), required: false, help: "fp32 AdamW, or bitsandbytes-style 8-bit blockwise states") { $0.optimizer = $1 as! String },
        Key(name: "train.seed", kind: .int(0...Int(Int32.max)), required: false, help: "adapter initialisation, data order and dropout") { $0.seed = $1 as! Int },
        Key(name: "train.packing", kind: .bool, required: false, help: "pack examples into full seq_len windows instead of padded, length-grouped batches") { $0.packing = $1 as! Bool },
        Key(name: "train.grad_checkpoint", kind: .bool, required: false, help: "keep only block inputs and recompute activations in backward") { $0.gradCheckpoint = $1 as! Bool },
        Key(name: "eval.every", kind: .int(0...100_000_000), required: false, help: "validation every N steps (0: only at the end)") { $0.evalEvery = $1 as! Int },
        Key(name: "eval.batches", kind: .int(1...100_000_000), required: false, help: "validation batches per evaluation") { $0.evalBatches = $1 as! Int },
        Key(name: "checkpoint.every", kind: .int(0...100_000_000), required: false, help: "checkpoint every N steps (0: only on interrupt)") { $0.checkpointEvery = $1 as! Int },
        Key(name: "checkpoint.keep", kind: .int(1...100_000), required: false, help: "checkpoints kept; older ones are removed") { $0.checkpointKeep = $1 as! Int },
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
        throw ConfigError.unknownKey(key: key, suggestion: nearest(key, schema.map(\.name)))
    }

    /// The closest name by edit distance (also comparing the last component), if reasonably close.
    static func nearest(_ key: String, _ names: [String]) -> String? {
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            var row = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var previous = row[0]
                row[0] = i
                for j in 1...max(b.count, 1) where !b.isEmpty {
                    let saved = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                    previous = saved
                }
            }
            return row[b.count]
        }
        let last = String(key.split(separator: ".").last ?? "")
        let scored = names.map { name -> (String, Int) in
            let nameLast = String(name.split(separator: ".").last!)
            return (name, min(distance(key, name), distance(last, nameLast) + (key.contains(".") ? 1 : 0)))
        }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, key.count / 3) else { return nil }
        return best.0
    }

    init(flat: [String: Any]) throws {
        self.init()
        for key in Self.schema {
            let raw = flat[key.name]
            if raw == nil || raw is NSNull {
                if key.required { throw ConfigError.missing(key: key.name) }
                switch key.kind {
                case .optionalString, .optionalInt, .optionalDouble: if raw != nil { key.apply(&self, nil) }
                default: if raw is NSNull { throw ConfigError.badValue(key: key.name, detail: "cannot be null") }
                }
                continue
            }
            key.apply(&self, try Self.validate(raw!, key))
        }
        if maxSteps == nil && epochs == nil { throw ConfigError.badValue(key: "train.max_steps", detail: "or train.epochs must be set") }
        if let adapterInit, adapterInit.isEmpty { throw ConfigError.badValue(key: "adapter_init", detail: "is empty") }
    }

    static func validate(_ value: Any, _ key: Key) throws -> Any {
        func number(_ v: Any) -> Double? {
            if v is Bool { return nil }
            if let i = v as? Int { return Double(i) }
            if let s = v as? String { return Double(s) }  // YAML 1.1 reads 1e-4 (no dot) as a string
            return v as? Double
        }
        func int(_ v: Any) -> Int? {
            if v is Bool { return nil }
            if let i = v as? Int { return i }
            if let d = v as? Double, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
            return nil
        }
        switch key.kind {
        case .string, .optionalString:
            guard let s = value as? String else { throw ConfigError.badValue(key: key.name, detail: "must be a string (got \(value))") }
            return s
        case let .int(range), let .optionalInt(range):
            guard let i = int(value) else { throw ConfigError.badValue(key: key.name, detail: "must be an integer (got \(value))") }
            guard range.contains(i) else { throw ConfigError.badValue(key: key.name, detail: "must be in \(range.lowerBound)...\(range.upperBound) (got \(i))") }
            return i
        case let .double(range), let .optionalDouble(range):
            guard let d = number(value) else { throw ConfigError.badValue(key: key.name, detail: "must be a number (got \(value))") }
            guard range.contains(d) else { throw ConfigError.badValue(key: key.name, detail: "must be in \(range.lowerBound)...\(range.upperBound) (got \(d))") }
            return d
        case .bool:
            guard let b = value as? Bool else { throw ConfigError.badValue(key: key.name, detail: "must be true or false (got \(value))") }
            return b
        case let .choice(options):
            guard let s = value as? String, options.contains(s) else {
                throw ConfigError.badValue(key: key.name, detail: "must be one of \(options.joined(separator: ", ")) (got \(value))"
                    + ((value as? String).flatMap { nearest($0, options) }.map { "; did you mean '\($0)'?" } ?? ""))
            }
            return s
        case let .list(options):
            let items = (value as? [Any]) ?? [value]
            var out: [String] = []
            for item in items {
                guard let s = item as? String, options.contains(s) else {
                    throw ConfigError.badValue(key: key.name, detail: "has '\(item)', not one of \(options.joined(separator: ", "))"
                        + ((item as? String).flatMap { nearest($0, options) }.map { "; did you mean '\($0)'?" } ?? ""))
                }
                out.append(s)
            }
            guard !out.isEmpty else { throw ConfigError.badValue(key: key.name, detail: "must name at least one projection") }
            return out
        }
    }

    /// Every key's value as a YAML scalar, by dotted name.
    var scalars: [String: String] {
        let values: [String: Any?] = [
            "model": model, "adapter_init": adapterInit, "output_dir": outputDir,
            "data.train": trainData, "data.valid": validData, "data.format": format.rawValue, "data.mask_prompt": maskPrompt,
            "data.skip_invalid": skipInvalid, "lora.rank": rank, "lora.alpha": alpha, "lora.dropout": dropout, "lora.targets": targets,
            "lora.rslora": rsLoRA, "train.seq_len": seqLen, "train.batch_size": batchSize, "train.grad_accum": gradAccum,
            "train.max_steps": maxSteps, "train.epochs": epochs, "train.lr": lr, "train.schedule": schedule.rawValue, "train.warmup": warmup,
            "train.weight_decay": weightDecay, "train.max_grad_norm": maxGradNorm, "train.optimizer": optimizer, "train.seed": seed,
            "train.packing": packing, "train.grad_checkpoint": gradCheckpoint, "eval.every": evalEvery, "eval.batches": evalBatches,
            "checkpoint.every": checkpointEvery, "checkpoint.keep": checkpointKeep,
        ]
        func scalar(_ v: Any?) -> String {
            switch v {
            case nil: return "null"
            case let s as String: return s.isEmpty ? "\"\"" : ((try? Yams.dump(object: s).trimmingCharacters(in: .whitespacesAndNewlines)) ?? s)
            case let l as [String]: return "[" + l.joined(separator: ", ") + "]"
            case let d as Double: return "\(d)"
            case let some?: return "\(some)"
            }
        }
        return values.mapValues { scalar($0) }
    }

    /// The configuration as nested YAML, every key included; with `help`, each key's meaning as a comment.
    public func yaml(help: Bool = false) -> String {
        let values = scalars
        var out = "", section = ""
        for key in Self.schema {
            let parts = key.name.split(separator: ".").map(String.init)
            if parts.count == 2 && parts[0] != section {
                section = parts[0]
                out += "\(section):\n"
            }
            let line = (parts.count == 2 ? "  " + parts[1] : parts[0]) + ": " + values[key.name]!
            out += help ? line.padding(toLength: max(line.count, 36), withPad: " ", startingAt: 0) + "  # " + (key.required ? "required: " : "") + key.help + "\n" : line + "\n"
        }
        return out
    }

    /// Warmup as a step count for `total` steps.
    public func warmupSteps(total: Int) -> Int { warmup < 1 ? Int((warmup * Double(total)).rounded(.up)) : Int(warmup) }
}
