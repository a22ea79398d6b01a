import Foundation
import LQFormats
import LQModel
import LQQuant

extension LQLoRAPipeline {
    /// The adapter's directory inside the output.
    public static let adapterDirectory = "adapter"

    /// Writes a run's model as `lqlora quantize` does into `directory` (which must exist): the
    /// quantized checkpoint with its config.json and side files, and for lq-lora the PEFT adapter
    /// in `adapter/`. quant_report.json is the caller's.
    public static func write(_ result: Result, plan: Plan, to directory: String) throws {
        let checkpoint = plan.checkpoint
        try QuantizedCheckpoint.write(from: checkpoint, quantized: result.quantized, modelConfig: plan.modelConfig, to: directory)
        if !result.adapter.isEmpty {
            try PEFTAdapter.write(result.adapter.map { PEFTAdapter.Pair(module: $0.module, a: $0.a, b: $0.b) }, rank: plan.options.rank,
                                  alpha: plan.options.alpha, base: checkpoint.directory, to: directory + "/" + adapterDirectory)
        }
    }

    /// The memory planner's sizes of the weight files `write` makes (model.safetensors or its
    /// shards and index, and the adapter's adapter_model.safetensors with rank-`rank` parts; none
    /// when 0) for `matrices` of `checkpoint`, each under one of `configs`: every matrix's tensor
    /// bytes under each, and the exact file bytes of a whole choice. Config files are not counted.
    public static func outputSizing(checkpoint: Checkpoint, matrices: [String], configs: [QuantConfig],
                                    rank: Int) throws -> AllocationTable.ModelSizing {
        let entries = try matrices.map { try checkpoint.entry($0) }
        // Sizes depend on the shape alone, and models repeat a handful of shapes.
        var byShape: [[Int]: [Int64]] = [:]
        for e in entries where byShape[e.shape] == nil {
            byShape[e.shape] = configs.map { c in
                Int64(QuantizedStorage.planned(config: c, rows: e.shape[0], cols: e.shape[1], name: e.name, original: e.dtype)
                    .tensors.reduce(0) { $0 + $1.byteCount })
            }
        }
        let matrixBytes = entries.map { byShape[$0.shape]! }
        let targets = Set(matrices)
        let fixed = checkpoint.entries.filter { !targets.contains($0.name) }.reduce(Int64(0)) { $0 + Int64($1.byteCount) }
        let modules = entries.map { (module: PEFTKeys.module(ofWeight: $0.name), outFeatures: $0.shape[0], inFeatures: $0.shape[1]) }
        let lowRank = rank == 0 ? 0 : modules.reduce(Int64(0)) {
            let p = PEFTAdapter.planned(module: $1.module, outFeatures: $1.outFeatures, inFeatures: $1.inFeatures, rank: rank)
            return $0 + Int64(p.a.byteCount + p.b.byteCount)
        }
        let adapterFile = rank == 0 ? 0 : Int64(PEFTAdapter.weightsFileBytes(modules: modules, rank: rank))
        return AllocationTable.ModelSizing(matrixBytes: matrixBytes) { choice in
            let chosen = Dictionary(uniqueKeysWithValues: zip(matrices, choice.map { configs[$0] }))
            let total = Int64(try QuantizedCheckpoint.weightFileBytes(from: checkpoint, configs: chosen)) + adapterFile
            let quantized = zip(matrixBytes, choice).reduce(Int64(0)) { $0 + $1.0[$1.1] }
            return .init(quantized: quantized, lowRank: lowRank, fixed: fixed, headers: total - quantized - lowRank - fixed)
        }
    }
}
