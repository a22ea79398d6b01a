import ArgumentParser
import Foundation
import LQFormats
import LQQuant
import LQTensor

/// `lqlora dequantize`: a dense checkpoint back from a quantized one.
struct Dequantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a dense checkpoint from a quantized one (each matrix dequantized in turn).")

    @Option(help: "The quantized model directory.")
    var model: String

    @OptionGroup var output: OutputOptions

    @Option(help: "bf16, f16 or f32 for the dequantized matrices (default: a NormalFloat matrix's original dtype; f32 for GPTQ/RTN integers, their exact dequantization).")
    var dtype: String?

    func validate() throws {
        if let dtype, !["bf16", "f16", "f32"].contains(dtype) { throw ValidationError("--dtype must be bf16, f16 or f32") }
    }

    func run() throws {
        try CommandFailure.exits("dequantize") { try dequantize() }
    }

    func dequantize() throws {
        Parallel.configure()
        let checkpoint = try Checkpoint(path: model)
        let stored = try QuantizedWeights(checkpoint)
        guard stored.count > 0 else { throw CLIError("\(checkpoint.path) holds no quantized weights") }
        let staged = try output.staged()
        var committed = false
        defer { if !committed { staged.abandon() } }
        let forced: DType? = dtype.map { ["bf16": .bf16, "f16": .f16, "f32": .f32][$0]! }

        var pending: [PendingTensor] = []
        var emitted = Set<String>()
        for name in checkpoint.tensorNames {
            let weight = stored.weight(owning: name)
            guard stored.isQuantized(weight) else {
                let (file, entry) = try checkpoint.locate(name)
                pending.append(ModelFiles.copied(entry, from: file))
                continue
            }
            // The first part met stands for the whole weight.
            guard emitted.insert(weight).inserted else { continue }
            if stored.isGPTQ(weight) {  // scale·(code − zero) with fp16 scales: exact in f32
                let target = forced ?? .f32
                pending.append(PendingTensor(name: weight, dtype: target, shape: try stored.shape(weight)) { raw in
                    let dense = try stored.dense(weight)
                    DTypeConversion.fromFloat32(UnsafeBufferPointer(dense.buffer), dtype: target, into: raw)
                })
                continue
            }
            let (q, original) = try QuantizedStorage.load(weight, from: checkpoint)
            let target = forced ?? (original == .f16 || original == .bf16 ? original : .f32)
            pending.append(PendingTensor(name: weight, dtype: target, shape: [q.rows, q.cols]) { raw in
                let dense = q.dequantize()
                DTypeConversion.fromFloat32(UnsafeBufferPointer(dense.buffer), dtype: target, into: raw)
            })
        }
        // Plain checkpoints carry no lqlora metadata; weight names come from the quantized ones.
        try CheckpointWriter.write(pending, toDirectory: staged.staging)
        var config = try checkpoint.config() ?? [:]
        config.removeValue(forKey: "quantization_config")
        if stored.gptq != nil && forced == nil { config["torch_dtype"] = DType.f32.torchName }
        try ModelFiles.writeJSON(config, to: staged.path("config.json"))
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: staged.staging)
        try staged.commit()
        committed = true
        print("dequantized \(stored.count) matrices → \(staged.destination)")
    }
}
