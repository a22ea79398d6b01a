import ArgumentParser
import Dispatch
import Foundation
import LQDistributed
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
#if canImport(Glibc)
import Glibc
#endif

/// `lqlora finetune`: LoRA training on a frozen dense, NF4 or LQ-LoRA base, or full-parameter
/// training of a dense model's projections (full AdamW, GaLore, Q-GaLore), from a YAML config.
struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train LoRA adapters on a frozen dense or quantized model, or a dense model's projections themselves, from a YAML config.",
        discussion: "Writes output_dir/adapter_model.safetensors + adapter_config.json (PEFT) — or with method full, galore or q-galore the whole model in output_dir/model — metrics.jsonl, loss.svg and checkpoint-STEP/ directories. Ctrl-C saves a checkpoint; --resume output_dir continues from the newest one. `--schema` prints every key with its default.")

    @Option(help: "The YAML configuration.")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a key, e.g. --set train.lr=1e-4 (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Option(help: "Continue from the newest checkpoint in this output directory.")
    var resume: String?

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Start again in an output_dir that holds an earlier run (its files are removed first).")
    var overwrite = false

    @OptionGroup var deviceOptions: DeviceOptions

    @Flag(help: "Print every configuration key with its default and meaning, then exit.")
    var schema = false

    @Option(parsing: .unconditional, help: .hidden)
    var stopAfter: Int?  // tests: behave as if interrupted after this many steps

    func run() throws {
        if schema {
            print(TrainConfig().yaml(help: true), terminator: "")
            return
        }
        guard let config else { throw ValidationError("--config is required") }
        // A configuration that cannot be read or checked exits 2, before any work.
        let settings = try CommandFailure.exits("finetune", code: ExitCode(2), context: config) {
            try TrainConfig(path: config, overrides: overrides)
        }
        threadOptions.configure()
        var progress: Progress?
        // Under mpirun every rank trains its share of each step; rank 0 alone owns output_dir and speaks.
        let world = Cluster.world
        try CommandFailure.exits("finetune", beforeMessage: { progress?.message("") }) {
            var lock: OutputLock?
            _ = try world.onRoot { () -> Bool in
                lock = try Self.claim(outputDir: settings.outputDir, resuming: resume != nil, overwrite: overwrite)
                return true
            }
            defer { lock?.release() }
            try deviceOptions.activate()
            let trainer = try Trainer(config: settings, communicator: world) { note in if world.isRoot { printError("lqlora finetune: note: \(note)") } }
            if let resume { try trainer.resume(from: resume) }
            let fault = Self.testFault(rank: world.rank)
            let interrupt = InterruptFlag()
            let started = trainer.step
            trainer.shouldStop = { interrupt.isSet || (stopAfter.map { trainer.step - started >= $0 } ?? false) }
            guard world.isRoot else {
                trainer.onStep = { r in if r.step == fault { kill(getpid(), SIGKILL) } }
                if case .interrupted = try trainer.run() { throw ExitCode(130) }
                return
            }
            describe(trainer)
            if world.size > 1 {
                let per = settings.gradAccum / world.size
                printError("data-parallel over \(world.size) ranks: \(per) micro-batch\(per == 1 ? "" : "es") of \(settings.batchSize) each per step, gradients summed with one allreduce of \(Format.grouped(trainer.parameters.parameterCount)) floats")
            }
            let bar = Progress(total: trainer.totalSteps, label: "finetune")
            progress = bar
            trainer.onStep = { r in
                if r.step == fault { kill(getpid(), SIGKILL) }
                let terms = r.divergence.map { String(format: " (kl %.2f, ce %.4f)", $0, r.crossEntropy ?? .nan) } ?? ""
                let skipped = r.skippedSteps > 0 ? "  \(r.skippedSteps) skipped" : ""
                bar.update(r.step, detail: String(format: "loss %.4f%@  lr %.2e  %.0f tok/s  rss %@%@", r.loss, terms, r.learningRate, r.tokensPerSecond,
                                                  Format.bytes(r.residentBytes), skipped))
            }
            trainer.onEvaluation = { step, loss in
                let kl = trainer.teacher == nil ? "" : String(format: ", KL to the teacher %.4f nats/token", loss.meanDivergence)
                bar.message(String(format: "step %d: validation loss %.4f, perplexity %.3f (%d tokens)%@", step, loss.mean, exp(loss.mean), loss.targets, kl))
            }
            trainer.onCheckpoint = { bar.message("saved \($0)") }
            switch try trainer.run() {
            case .finished where settings.method.trainsFullRank:
                print("model written to \(settings.outputDir)/model (\(settings.outputDType.rawValue) safetensors with config and tokenizer: eval, generate and transformers load it); metrics.jsonl and loss.svg in \(settings.outputDir); peak memory \(Format.bytes(MemoryUsage.peak()))")
            case .finished where settings.l4qBits != nil:
                if let r = trainer.zeroPointRounding { print(Self.summary(r)) }
                let zeros = settings.l4qFormat == .gptq ? "integer zero points in AutoGPTQ's layout; eval, generate and transformers load it"
                    : "fractional zero points; eval and generate load it"
                print("quantized model written to \(settings.outputDir)/model (\(settings.l4qBits!)-bit codes, \(zeros)); metrics.jsonl and loss.svg in \(settings.outputDir); peak memory \(Format.bytes(MemoryUsage.peak()))")
            case .finished:
                print("adapter written to \(settings.outputDir) (PEFT format); metrics.jsonl and loss.svg beside it; peak memory \(Format.bytes(MemoryUsage.peak()))")
            case let .interrupted(step):
                let sets = overrides.map { " --set " + $0 }.joined()
                bar.message("interrupted at step \(step); resume with: lqlora finetune --config \(config)\(sets) --resume \(settings.outputDir)")
                throw ExitCode(130)
            }
        }
    }

    func describe(_ t: Trainer) {
        let c = t.config
        var lines: [String]
        if let full = t.fullRank {
            lines = ["model \(c.model): \(t.model.layers.count) layers, every projection trained (\(Format.grouped(full.parameterCount)) weights; "
                     + "embeddings, norms and the LM head frozen)"]
            let q = c.qgalore
            switch c.method {
            case .full: lines.append("full AdamW: fp32 weights and moments, each matrix stepped as its gradient arrives")
            case .galore, .qGalore:
                let storage = c.method == .qGalore
                    ? "\(q.weightBits)-bit weights in groups of \(q.weightGroupSize) (\(q.stochasticRounding ? "stochastic rounding" : "rounded to nearest")), \(q.projBits)-bit projections"
                    : "fp32 weights and projections"
                lines.append("\(c.method == .qGalore ? "Q-GaLore" : "GaLore"): \(storage); rank \(q.rank), scale \(q.scale), refreshed every \(q.updateProjGap) steps "
                             + "(×\(q.gammaProj) once the last \(q.queueSize) cosines average ≥ \(q.cosThreshold)); training state \(Format.bytes(full.stateBytes))")
            case .lora: break
            }
        } else {
            lines = ["model \(c.model): \(t.model.layers.count) layers, adapters on \(t.parameters.config.targetModules.joined(separator: ",")) "
                     + "(rank \(t.parameters.config.rank), \(Format.grouped(t.parameters.parameterCount)) trainable parameters)"]
        }
        lines.append("data \(c.trainData) (\(t.train.format.rawValue)): \(t.train.examples.count) examples, \(Format.grouped(t.train.tokenCount)) tokens, "
                     + "\(Format.grouped(t.train.targetCount)) trained" + (t.train.skipped > 0 ? ", \(t.train.skipped) skipped" : "")
                     + (t.train.truncated > 0 ? ", \(t.train.truncated) truncated to \(c.seqLen)" : "")
                     + (t.train.dropped > 0 ? ", \(t.train.dropped) dropped (no target within seq_len)" : ""))
        if let v = t.valid { lines.append("valid \(c.validData!): \(v.examples.count) examples") }
        if let bits = c.l4qBits {
            lines.append("L4Q: LoRA through a learned \(bits)-bit quantizer, groups of \(c.l4qGroupSize == 0 ? "a whole row" : String(c.l4qGroupSize))"
                         + (c.l4qWarmupSteps > 0 ? ", quantizer off for the first \(c.l4qWarmupSteps) steps" : "")
                         + (c.l4qFormat == .gptq ? "; integer zero points, written in AutoGPTQ's layout" : ""))
        }
        if let teacher = c.teacher {
            lines.append("distilling from \(teacher): loss = \(c.klWeight)·KL(teacher‖student)/sequence + \(c.ceWeight)·CE/token")
        }
        lines.append("\(t.totalSteps) steps of \(c.batchSize)×\(c.gradAccum) sequences, \(c.optimizer) lr \(c.lr) \(c.schedule.rawValue), warmup \(t.schedule.warmup)"
                     + (t.step > 0 ? "; resuming after step \(t.step)" : ""))
        for line in lines { printError(line) }
    }
}

extension Finetune {
    /// The one line l4q.format gptq ends with: how far storing the zero points as integers moved the
    /// weights from what lqlora's layout would store (0 when training kept them integers).
    static func summary(_ r: ZeroPointRounding) -> String {
        let clamped = r.clampedZeros == 0 ? "" : ", \(r.clampedZeros) of \(r.zeroPoints) clamped into \(r.allowed.lowerBound)...\(r.allowed.upperBound)"
        return String(format: "gptq layout: integer zero points%@; dequantized weights moved by RMS %.3g, max %.3g (relative %.3g) from the trained model as the lqlora layout stores it",
                      clamped, r.change.rms, r.change.maxAbs, r.change.relative)
    }

    /// Tests of a rank that dies: LQLORA_TEST_RANK_DIES="R:S" makes rank R kill itself (SIGKILL,
    /// as the OOM killer would) after step S.
    static func testFault(rank: Int) -> Int? {
        guard let spec = ProcessInfo.processInfo.environment["LQLORA_TEST_RANK_DIES"] else { return nil }
        let parts = spec.split(separator: ":").compactMap { Int($0) }
        return parts.count == 2 && parts[0] == rank ? parts[1] : nil
    }

    /// Claims output_dir for this run: locked against a second run writing it; an earlier run there
    /// is continued (--resume) or replaced (--overwrite), never mixed with a new run's checkpoints
    /// and metrics; what a killed run left half-written (checkpoint-N.partial, an old run being
    /// deleted) goes.
    static func claim(outputDir: String, resuming: Bool, overwrite: Bool) throws -> OutputLock {
        let fm = FileManager.default
        let lock = try OutputLock(for: outputDir)
        let url = URL(fileURLWithPath: outputDir).standardizedFileURL
        StagedDirectory.removeStale(in: url.deletingLastPathComponent().path, name: url.lastPathComponent)
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: outputDir, isDirectory: &isDirectory) else { return lock }
        guard isDirectory.boolValue else { throw CLIError("output_dir \(outputDir) is a file; it must be a directory (set another output_dir)") }
        let entries = try fm.contentsOfDirectory(atPath: outputDir)
        // Only this run (it holds the lock) could be writing these (checkpoint-N.partial,
        // model.partial and their "-old" asides): they are a killed run's.
        for partial in entries where partial.hasSuffix(".partial") || partial.hasSuffix(".partial-old") {
            try? fm.removeItem(atPath: outputDir + "/" + partial)
        }
        let earlier = entries.filter { ["summary.json", "metrics.jsonl", "adapter_model.safetensors"].contains($0) || ($0.hasPrefix("checkpoint-") && !$0.contains(".partial")) }
        guard !resuming, !earlier.isEmpty else { return lock }
        guard overwrite else {
            throw CLIError("\(outputDir) holds an earlier run (\(earlier.sorted().prefix(3).joined(separator: ", "))): pass --resume \(outputDir) to continue it, --overwrite to start again, or set another output_dir")
        }
        // Renamed aside in one step, then deleted: a kill mid-way leaves a staging name the next
        // run removes, never a half-deleted run under output_dir.
        let aside = url.deletingLastPathComponent().path + "/" + StagedDirectory.stagingPrefix(url.lastPathComponent) + "\(getpid())"
        do {
            try fm.moveItem(atPath: url.path, toPath: aside)
            try fm.removeItem(atPath: aside)
        } catch {
            throw CLIError("cannot remove \(outputDir) for --overwrite: \(FileSystemFailure.reason(error))")
        }
        return lock
    }
}

/// Set by SIGINT: the loop saves a checkpoint and stops at the end of the step. A second Ctrl-C exits at once.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    private let source: DispatchSourceSignal

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            self.lock.lock()
            let again = self.set
            self.set = true
            self.lock.unlock()
            if again { exit(130) }
            FileHandle.standardError.write(Data("\nCtrl-C: saving a checkpoint after this step (again to quit now)\n".utf8))
        }
        source.resume()
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return set
    }
}
