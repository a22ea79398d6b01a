import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

extension UniformPipeline.Method: ExpressibleByArgument {}
extension GPTQFormat.Layout: ExpressibleByArgument {}

/// GPTQ's and round to nearest's options, shared by `quantize --method gptq|rtn` and
/// `merge --requantize gptq|rtn`, with what both do with them: the checks, the calibration windows,
/// the run with its progress line, and quant_report.json.
struct UniformOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "gptq / rtn: bits per weight, 2, 3, 4 or 8 (default 4).")
    var bits: Int?

    @Option(parsing: .unconditional, help: "gptq / rtn: input columns per scale and zero point, or -1 for one per row (default 128).")
    var groupSize: Int?

    @Flag(help: "gptq / rtn: asymmetric codes (a zero point per group) instead of symmetric ones.")
    var asym = false

    @Flag(help: "gptq: quantize columns by descending Hessian diagonal (desc_act).")
    var actOrder = false

    @Flag(help: "gptq: every group's scale and zero point from the original weight before any column is quantized, in natural column order (AutoGPTQ's static_groups; with --act-order each column keeps its natural group).")
    var staticGroups = false

    @Flag(name: .customLong("no-true-sequential"), help: "gptq: quantize each block's seven projections at once from the unquantized block's inputs, instead of in the groups [k, v, q], [o], [up, gate], [down] each seeing the ones before it quantized (true_sequential false).")
    var noTrueSequential = false

    @Option(parsing: .unconditional, help: "gptq: damping as a fraction of the Hessian's mean diagonal (default 0.1; raised by 0.01 while a factorisation fails).")
    var damp: Double?

    @Option(help: "gptq: calibration text, .txt or .jsonl (\"text\" field), optionally .gz.")
    var calib: String?

    @Option(parsing: .unconditional, help: "gptq: calibration windows (default 128).")
    var samples: Int?

    @Option(parsing: .unconditional, help: "gptq: tokens per calibration window (default 2048).")
    var seqLen: Int?

    @Option(parsing: .unconditional, help: "gptq: seed of the windows' random starts (default 0).")
    var seed: Int?

    @Option(help: "gptq / rtn: gptq (AutoGPTQ's v1 layout, which transformers loads; default) or lqlora (lqlora's own: fp16 zero points, quant_method lqlora_uniform, exact for an asymmetric zero point of 0).")
    var format: GPTQFormat.Layout?

    /// Each option's name and whether it was given, for the commands' "does not apply" checks.
    var given: [(String, Bool)] {
        [("--bits", bits != nil), ("--group-size", groupSize != nil), ("--asym", asym), ("--act-order", actOrder), ("--static-groups", staticGroups),
         ("--no-true-sequential", noTrueSequential), ("--damp", damp != nil),
         ("--calib", calib != nil), ("--samples", samples != nil), ("--seq-len", seqLen != nil), ("--seed", seed != nil),
         ("--format", format != nil)]
    }

    /// The options a method reads (the others are refused by name).
    static func applicable(to method: UniformPipeline.Method) -> Set<String> {
        switch method {
        case .gptq: return ["--bits", "--group-size", "--asym", "--act-order", "--static-groups", "--no-true-sequential", "--damp", "--calib",
                            "--samples", "--seq-len", "--seed", "--format"]
        case .rtn: return ["--bits", "--group-size", "--asym", "--format"]
        }
    }

    /// The values' checks (the command has refused options the method does not read).
    func validate(method: UniformPipeline.Method, command: String) throws {
        if let bits, ![2, 3, 4, 8].contains(bits) { throw ValidationError("--bits must be 2, 3, 4 or 8") }
        if let groupSize, groupSize != -1 && groupSize < 1 { throw ValidationError("--group-size must be -1 or positive") }
        if let damp, !(damp > 0 && damp < 1) { throw ValidationError("--damp must be between 0 and 1") }
        if method == .gptq && calib == nil { throw ValidationError("\(command) gptq needs --calib (a text file to calibrate on)") }
        guard (samples ?? 1) >= 1, (seqLen ?? 2) >= 2 else { throw ValidationError("--samples must be positive and --seq-len at least 2") }
    }

    func options(_ method: UniformPipeline.Method) -> UniformPipeline.Options {
        let group = groupSize ?? 128
        return UniformPipeline.Options(
            method: method,
            quantization: GPTQ.Options(bits: bits ?? 4, groupSize: group == -1 ? nil : group, symmetric: !asym, actOrder: actOrder,
                                       damp: Float(damp ?? 0.1), staticGroups: staticGroups),
            layout: format ?? .gptq, trueSequential: !noTrueSequential)
    }

    /// What a run needs, checked against the model before anything is written: the options and (gptq)
    /// the calibration windows, tokenized with the tokenizer in `tokenizerDirectory`.
    struct Prepared {
        let options: UniformPipeline.Options
        let calibration: [[Int]]
        let calibrationReport: [String: Any]?
    }

    func prepare(_ method: UniformPipeline.Method, model m: LlamaModel, tokenizerDirectory: String) throws -> Prepared {
        let options = options(method), bits = options.quantization.bits
        if let g = options.quantization.groupSize, let bad = m.layers.first?.linears.first(where: { $0.1.inFeatures < g }) {
            throw CLIError("--group-size \(g) is wider than \(bad.0.module)'s \(bad.1.inFeatures) inputs")
        }
        // qweight packs each output's codes into 32-bit words; AutoGPTQ's qzeros pack the outputs too.
        for (p, linear) in m.layers[0].linears
        where (linear.inFeatures * bits) % 32 != 0 || (options.layout == .gptq && (linear.outFeatures * bits) % 32 != 0) {
            throw CLIError("\(p.module) [\(linear.outFeatures), \(linear.inFeatures)] at \(bits) bits does not pack into GPTQ's 32-bit words")
        }
        guard method == .gptq else { return Prepared(options: options, calibration: [], calibrationReport: nil) }
        let samples = try calibrationSamples(tokenizerDirectory: tokenizerDirectory, vocabulary: m.config.vocabSize)
        return Prepared(options: options, calibration: samples,
                        calibrationReport: ["file": calib!, "samples": samples.count, "seq_len": seqLen ?? 2048, "seed": seed ?? 0])
    }

    /// Quantizes every projection of `m` with a progress line, hands the result to `write` (which
    /// puts the tensors and config.json into `staged`), then writes quant_report.json there. Returns
    /// the summary line ("gptq: 210 matrices to 4 bits, group 128, 4.169 bits per parameter, 339.7 s").
    func run(_ prepared: Prepared, model m: LlamaModel, staged: StagedDirectory, start: Double,
             write: (UniformPipeline.Result) throws -> Void) throws -> String {
        let method = prepared.options.method
        let progress = Progress(total: m.config.layerCount * Projection.allCases.count, label: method.rawValue)
        var done = 0
        let result = try UniformPipeline.run(m, calibration: prepared.calibration, options: prepared.options) { event in
            if case let .matrix(site, q) = event {
                done += 1
                progress.update(done, detail: "\(site.module) rel_error \(String(format: "%.4f", q.relativeError))")
            }
        }
        try write(result)
        let seconds = Timing.now() - start
        try ModelFiles.writeJSON(result.report(seconds: seconds, calibration: prepared.calibrationReport), to: staged.path("quant_report.json"))
        let o = prepared.options.quantization
        return String(format: "%@: %d matrices to %d bits, group %@, %.3f bits per parameter, %.1f s", method.rawValue, result.matrices.count,
                      o.bits, o.groupSize.map(String.init) ?? "none", result.averageBits, seconds)
    }

    /// `--samples` windows of `--seq-len` tokens at random starts (seeded) in the tokenized --calib
    /// file, as GPTQ's datautils draws them from WikiText-2's training text.
    func calibrationSamples(tokenizerDirectory: String, vocabulary: Int) throws -> [[Int]] {
        let path = calib!
        let text = try EvaluationText.read(path: path)
        let tokenizer = try loadTokenizer(directory: tokenizerDirectory, modelVocabularySize: vocabulary)
        let ids = try tokenizer.encode(text, addSpecialTokens: false)
        let length = seqLen ?? 2048, count = samples ?? 128
        guard ids.count > length else {
            throw CLIError("\(path): \(ids.count) tokens, fewer than one calibration window of --seq-len \(length)")
        }
        var rng = SeededGenerator(seed: UInt64(seed ?? 0))
        return (0..<count).map { _ in
            let s = Int(rng.next() % UInt64(ids.count - length))
            return Array(ids[s..<(s + length)])
        }
    }
}

extension Quantize {
    /// gptq and rtn: uniform integer codes with fp16 group scales and zero points, written in
    /// AutoGPTQ's v1 layout (transformers, AutoGPTQ and GPTQModel load it; so do eval, generate
    /// and finetune here) or, with --format lqlora, in lqlora's own.
    func quantizeUniform(_ method: UniformPipeline.Method) throws {
        let start = Timing.now()
        let checkpoint = try Checkpoint(path: model)
        try CheckpointValidation.requireDense(checkpoint)
        let modelConfig = try checkpoint.config() ?? [:]
        let m = try LlamaModel(directory: model)
        let prepared = try uniform.prepare(method, model: m, tokenizerDirectory: model)
        let staged = try output.staged()
        var committed = false
        defer { if !committed { staged.abandon() } }
        let line = try uniform.run(prepared, model: m, staged: staged, start: start) { result in
            try GPTQFormat.write(from: checkpoint, quantized: result.quantized, settings: result.options.settings, modelConfig: modelConfig,
                                 to: staged.staging)
        }
        try staged.commit()
        committed = true
        print(line + " → " + staged.destination)
    }
}
