import ArgumentParser
import Foundation
import LQFormats
import LQLoRA
import LQModel
import LQQuant
import LQTensor

/// What `quantize --method` names.
enum QuantMethod: String, CaseIterable, ExpressibleByArgument {
    case nf2, nf3, nf4, nf8
    case lqLora = "lq-lora"
    case qloraILP = "qlora-ilp"
    case gptq, rtn

    /// Whether bits are chosen per matrix under a budget (the error table and the ILP).
    var allocates: Bool { self == .lqLora || self == .qloraILP }
    /// Uniform integer codes (GPTQ's format), with or without calibration.
    var uniform: UniformPipeline.Method? { UniformPipeline.Method(rawValue: rawValue) }
    /// The code width of a fixed NormalFloat method.
    var bits: Int? { allocates || uniform != nil ? nil : Int(rawValue.dropFirst(2)) }
}

extension Decomposition.SVDMethod: ExpressibleByArgument {}
extension ErrorTable.Grid: ExpressibleByArgument {}

/// `lqlora quantize`.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model's linear layers: NormalFloat (NF4 as bitsandbytes stores it), LQ-LoRA, or GPTQ / round-to-nearest integers.",
        discussion: """
        Each target matrix is read from the memory-mapped checkpoint, quantized and released before the next;
        embeddings, norms and lm_head are copied unchanged. The output directory is written in full beside
        --out and renamed into place at the end. NF4 with blocks of 64 uses the transformers + bitsandbytes
        layout; other formats use lqlora's own, described in the file's metadata. gptq and rtn write AutoGPTQ's
        checkpoint layout (qweight/qzeros/scales/g_idx, quantization_config in config.json), which transformers loads,
        or with --format lqlora lqlora's own (fp16 zero points in place of qzeros); every lqlora command loads both.
        """)

    @Option(help: "The model directory (config.json + safetensors).")
    var model: String

    @OptionGroup var output: OutputOptions

    @Option(help: "nf4, nf3, nf2, nf8; lq-lora (quantized + low-rank, bits chosen per matrix under --budget) or qlora-ilp (bits chosen per matrix, no low-rank part); gptq (calibrated on --calib) or rtn (round to nearest). Default nf4.")
    var method: QuantMethod?

    @Option(parsing: .unconditional, help: "lq-lora / qlora-ilp: average bits per parameter of the quantized parts (e.g. 2.75).")
    var budget: Double?

    @Option(help: "lq-lora / qlora-ilp: instead of --budget, a size the weight files written must fit (e.g. 2GiB, 1.5GB): the least error that fits.")
    var memory: ByteSize?

    @Option(parsing: .unconditional, help: "lq-lora: rank of the low-rank part (the LoRA rank; default 64).")
    var rank: Int?

    @Option(parsing: .unconditional, help: "lq-lora: LoRA alpha written to the adapter (scale alpha/rank; default 16).")
    var alpha: Double?

    @Option(parsing: .unconditional, help: "lq-lora: most decomposition iterations per matrix (default 20).")
    var maxIters: Int?

    @Option(help: "lq-lora: randomized or full SVD, for the error table and the decompositions (default randomized).")
    var svd: Decomposition.SVDMethod?

    @Option(help: "lq-lora / qlora-ilp: a diagonal Fisher file (lqlora fisher) to weight the errors.")
    var fisher: String?

    @Option(help: "lq-lora / qlora-ilp: JSON file caching the per-matrix error table, so another budget costs seconds.")
    var ilpCache: String?

    @Option(help: "lq-lora / qlora-ilp: candidate configurations, full (432) or compact (144, bf16 group scales; default full).")
    var grid: ErrorTable.Grid?

    @Option(parsing: .unconditional, help: "lq-lora / qlora-ilp: seconds the ILP solver may search before reporting its gap (default 60).")
    var ilpTime: Double?

    @Option(parsing: .unconditional, help: "nf2/nf3/nf4/nf8: values per absmax block (default 64).")
    var blockSize: Int?

    @Flag(inversion: .prefixedNo, help: "nf2/nf3/nf4/nf8: quantize the block absmax values too (QLoRA's double quantization; default on).")
    var doubleQuant: Bool?

    @OptionGroup var uniform: UniformOptions

    @Option(help: "An exact configuration instead of --method, e.g. nf3-b64-s8g256-fp32 (see quant_report.json).")
    var config: String?

    @Option(help: "Comma-separated modules to quantize (default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).")
    var targets: String?

    @OptionGroup var threadOptions: ThreadOptions

    var resolvedMethod: QuantMethod { method ?? .nf4 }
    /// --targets as a list; nil when not given (the decoder projections).
    var targetList: [String]? {
        targets.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }
    var allocates: Bool { resolvedMethod.allocates }

    func chosenConfig() throws -> QuantConfig {
        if let config {
            guard let c = QuantConfig.parse(config), c.isValid else { throw ValidationError("unknown --config '\(config)'") }
            return c
        }
        guard let bits = resolvedMethod.bits else { preconditionFailure("\(resolvedMethod) has no fixed configuration") }
        let blockSize = self.blockSize ?? 64
        guard [16, 32, 64, 128, 256].contains(blockSize) else { throw ValidationError("--block-size must be 16, 32, 64, 128 or 256") }
        if doubleQuant == false { return .plain(bits: bits, blockSize: blockSize) }
        if bits == 4 { return QuantConfig(bits: 4, blockSize: blockSize, scale: .dynamic8) }
        return QuantConfig(bits: bits, blockSize: blockSize, scale: .uint(bits: 8, groupSize: 256, dtype: .fp32))
    }

    func validate() throws {
        // Options that the chosen method would ignore are refused, naming them.
        let given: [(String, Bool)] = [
            ("--budget", budget != nil), ("--memory", memory != nil), ("--rank", rank != nil), ("--alpha", alpha != nil), ("--max-iters", maxIters != nil),
            ("--svd", svd != nil), ("--fisher", fisher != nil), ("--ilp-cache", ilpCache != nil), ("--grid", grid != nil),
            ("--ilp-time", ilpTime != nil), ("--block-size", blockSize != nil), ("--double-quant/--no-double-quant", doubleQuant != nil),
        ] + uniform.given + [("--targets", targets != nil && resolvedMethod.uniform != nil)]
        let applies: Set<String>
        if config != nil {
            if let method { throw ValidationError("--config names the configuration itself: drop --method \(method.rawValue)") }
            applies = []
        } else {
            switch resolvedMethod {
            case .lqLora: applies = ["--budget", "--memory", "--rank", "--alpha", "--max-iters", "--svd", "--fisher", "--ilp-cache", "--grid", "--ilp-time"]
            case .qloraILP: applies = ["--budget", "--memory", "--fisher", "--ilp-cache", "--grid", "--ilp-time"]
            case .gptq, .rtn: applies = UniformOptions.applicable(to: resolvedMethod.uniform!)
            default: applies = ["--block-size", "--double-quant/--no-double-quant"]
            }
        }
        if let (option, _) = given.first(where: { $0.1 && !applies.contains($0.0) }) {
            throw ValidationError("\(option) does not apply to \(config.map { "--config \($0)" } ?? "--method \(resolvedMethod.rawValue)")")
        }
        if let method = resolvedMethod.uniform { return try uniform.validate(method: method, command: "--method") }
        if allocates {
            if memory != nil {
                guard budget == nil else { throw ValidationError("give --budget or --memory, not both") }
                guard (rank ?? 1) >= 1, (maxIters ?? 1) >= 1 else { throw ValidationError("--rank and --max-iters must be positive") }
                return
            }
            guard let budget else {
                throw ValidationError("--method \(resolvedMethod.rawValue) needs --budget (average bits per parameter) or --memory (a size to fit)")
            }
            let costs = QuantConfig.lqloraGrid.map(\.bitsPerParameter)
            guard budget >= costs.min()! else {
                throw ValidationError(String(format: "--budget %.3f is below the cheapest configuration (%.4f bits)", budget, costs.min()!))
            }
            guard budget <= costs.max()! else {
                throw ValidationError(String(format: "--budget %.3f is above the dearest configuration (%.4f bits)", budget, costs.max()!))
            }
            guard (rank ?? 1) >= 1, (maxIters ?? 1) >= 1 else { throw ValidationError("--rank and --max-iters must be positive") }
            return
        }
        _ = try chosenConfig()
    }

    func run() throws {
        try CommandFailure.exits("quantize") { try quantize() }
    }

    func quantize() throws {
        threadOptions.configure()
        if allocates { return try quantizeWithAllocation() }
        if let method = resolvedMethod.uniform { return try quantizeUniform(method) }
        let config = try chosenConfig()
        let start = Timing.now()
        let checkpoint = try Checkpoint(path: model)
        try CheckpointValidation.requireDense(checkpoint)
        let modelConfig = try checkpoint.config() ?? [:]
        let selected = try Targets.select(in: checkpoint, named: targetList)
        let staged = try output.staged()
        var committed = false
        defer { if !committed { staged.abandon() } }

        // Each weight's output waits in a scratch file, not in memory (a 7B model's would be 3.5 GB).
        let spill = try SpillFile(directory: staged.staging)
        var parts: [String: QuantizedCheckpoint.Parts] = [:]
        var rows: [[String: Any]] = []
        var totalBits = 0.0, totalParams = 0
        let progress = Progress(total: selected.count, label: "quantize")
        for (i, name) in selected.enumerated() {
            let (file, entry) = try checkpoint.locate(name)
            let w = try file.floatTensor(entry)
            let q = try Quantizer.quantize(w, config: config, name: name)
            let relError = q.relativeError(to: w)
            parts[name] = try QuantizedCheckpoint.Parts(QuantizedWeight(q, original: entry.dtype), name: name, spill: spill)
            totalBits += config.bitsPerParameter * Double(q.count)
            totalParams += q.count
            rows.append(["name": name, "shape": [q.rows, q.cols], "config": try JSONTree.encode(ConfigReport(config)),
                         "bits_per_param": config.bitsPerParameter, "rel_error": relError])
            progress.update(i + 1, detail: "\(name) rel_error \(String(format: "%.4f", relError))")
        }

        try QuantizedCheckpoint.write(from: checkpoint, parts: parts, modelConfig: modelConfig, to: staged.staging)
        spill.remove()
        let seconds = Timing.now() - start
        try ModelFiles.writeJSON(["method": config.name, "average_bits": totalParams > 0 ? totalBits / Double(totalParams) : 0,
                                  "parameters_quantized": totalParams, "seconds": seconds, "matrices": rows],
                                 to: staged.path("quant_report.json"))
        try staged.commit()
        committed = true
        print("quantized \(selected.count) matrices (\(Format.grouped(totalParams)) parameters) to \(config.name), "
              + String(format: "%.3f bits per parameter, %.1f s", config.bitsPerParameter, seconds) + " → \(staged.destination)")
    }
}
