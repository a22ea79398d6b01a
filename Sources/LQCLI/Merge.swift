import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// `lqlora merge`: a dense checkpoint with a LoRA adapter folded in (W + s·B·A), dequantizing
/// quantized weights one matrix at a time; with --requantize, the merged projections quantized
/// again by quantize's GPTQ / round-to-nearest code (UniformOptions, UniformPipeline).
struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a PEFT LoRA adapter into a dense copy of its base model, or quantize the merged model again.",
        discussion: """
        A quantized base (NormalFloat, LQ-LoRA, GPTQ) merges into its dequantized weights, dequant(W) + s·B·A: the model \
        the adapter was trained on. --requantize gptq|rtn quantizes the merged projections again, with quantize's options \
        and code (GPTQ calibrates on --calib through the merged model), and writes a GPTQ checkpoint (--format gptq, or \
        lqlora); the other tensors as without it (copied as stored; other dequantized or adapted weights at --dtype). \
        It writes what `merge --dtype f32` followed by `quantize --method gptq|rtn` with the same options writes.
        """)

    @Option(help: "The base model directory (dense or quantized).")
    var model: String

    @Option(help: "The PEFT adapter directory.")
    var adapter: String

    @OptionGroup var output: OutputOptions

    @Option(help: "bf16, f16 or f32 for the dequantized or adapted weights written (with --requantize, those it does not quantize).")
    var dtype = "bf16"

    @Option(help: "Quantize the merged projections again: gptq (calibrated on --calib) or rtn (round to nearest), with the options below.")
    var requantize: UniformPipeline.Method?

    @OptionGroup var uniform: UniformOptions

    func validate() throws {
        guard ["bf16", "f16", "f32"].contains(dtype) else { throw ValidationError("--dtype must be bf16, f16 or f32") }
        let applies = requantize.map(UniformOptions.applicable) ?? []
        if let (option, _) = uniform.given.first(where: { $0.1 && !applies.contains($0.0) }) {
            throw ValidationError("\(option) " + (requantize.map { "does not apply to --requantize \($0.rawValue)" } ?? "applies only with --requantize gptq|rtn"))
        }
        if let requantize { try uniform.validate(method: requantize, command: "--requantize") }
    }

    func run() throws {
        try CommandFailure.exits("merge") {
            Parallel.configure()
            let start = Timing.now()
            let checkpoint = try Checkpoint(path: model)
            let adapterConfig = try AdapterConfig(directory: adapter)
            let adapterFile = try SafeTensorsFile(path: adapter + "/" + PEFTAdapter.weightsFile)
            // A quantized base merges into its dequantized weights: dequant(W) + s·B·A, the model that was trained.
            let stored = try QuantizedWeights(checkpoint)
            let storage: DType = ["bf16": .bf16, "f16": .f16, "f32": .f32][dtype]!
            let scale = adapterConfig.scale
            // --requantize: the merged model in memory (the same fp32 sums as the dense merge below),
            // checked and calibrated before anything is written, quantized once the output is claimed.
            let requantizing = try requantize.map { method -> (LlamaModel, UniformOptions.Prepared) in
                let m = try LlamaModel(directory: model)
                try m.loadAdapter(directory: adapter)
                m.fuseAdapters()
                return (m, try uniform.prepare(method, model: m, tokenizerDirectory: model))
            }
            let staged = try output.staged()
            var committed = false
            defer { if !committed { staged.abandon() } }
            var requantized: UniformPipeline.Result?
            var summary = ""
            if let (m, prepared) = requantizing {
                summary = try uniform.run(prepared, model: m, staged: staged, start: start) { requantized = $0 }
            }
            let replaced = requantized?.quantized ?? [:]

            // Every weight: dense as stored, or dequantized; plus s·B·A where the adapter has one.
            var pending: [PendingTensor] = []
            var emitted = Set<String>()
            var merged = 0  // adapted weights
            for name in checkpoint.tensorNames {
                let weight = stored.weight(owning: name)
                guard emitted.insert(weight).inserted else { continue }
                let module = PEFTKeys.module(ofWeight: weight)
                let aKey = PEFTKeys.lora(module: module, matrix: .a), bKey = PEFTKeys.lora(module: module, matrix: .b)
                let hasLoRA = adapterFile.contains(aKey) && adapterFile.contains(bKey)
                if hasLoRA { merged += 1 }
                if let q = replaced[weight] {  // a requantized projection, adapted or not
                    pending += try GPTQFormat.tensors(q, weight: weight, settings: requantized!.options.settings)
                    continue
                }
                if !stored.isQuantized(weight) && !hasLoRA {
                    let (file, entry) = try checkpoint.locate(name)
                    pending.append(ModelFiles.copied(entry, from: file))
                    continue
                }
                let shape = try stored.shape(weight)
                pending.append(PendingTensor(name: weight, dtype: storage, shape: shape) { raw in
                    let w = try stored.dense(weight)
                    if hasLoRA {
                        let a = try adapterFile.floatTensor(aKey), b = try adapterFile.floatTensor(bKey)
                        guard a.shape == [adapterConfig.rank, shape[1]], b.shape == [shape[0], adapterConfig.rank] else {
                            throw CLIError("\(adapterFile.path): '\(aKey)' \(a.shape) / '\(bKey)' \(b.shape) do not fit '\(weight)' \(shape)")
                        }
                        gemm(b.matrix, a.matrix, into: w.matrix, alpha: scale, beta: 1)
                    }
                    DTypeConversion.fromFloat32(UnsafeBufferPointer(w.buffer), dtype: storage, into: raw)
                })
            }
            guard merged > 0 else { throw CLIError("\(adapter): no LoRA matrix matches a weight of \(checkpoint.path)") }
            var config = try checkpoint.config() ?? [:]
            config.removeValue(forKey: "quantization_config")
            config["torch_dtype"] = storage.torchName
            if let requantized {
                try GPTQFormat.write(pending, settings: requantized.options.settings, modelConfig: config, sideFilesFrom: checkpoint.directory,
                                     to: staged.staging)
            } else {
                try CheckpointWriter.write(pending, toDirectory: staged.staging)
                try ModelFiles.writeJSON(config, to: staged.path("config.json"))
                try ModelFiles.copySideFiles(from: checkpoint.directory, to: staged.staging)
            }
            try staged.commit()
            committed = true
            print("merged \(merged) adapted weights (scale \(scale))" + (requantize == nil ? "" : "; \(summary)") + " → \(staged.destination)")
        }
    }
}
