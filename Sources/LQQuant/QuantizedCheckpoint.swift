import Foundation
import LQFormats
import LQTensor

/// A quantized weight and the dtype its checkpoint stored it in (the compute dtype of the output).
public struct QuantizedWeight: Sendable {
    public let matrix: QuantizedMatrix
    public let original: DType

    public init(_ matrix: QuantizedMatrix, original: DType) {
        self.matrix = matrix
        self.original = original
    }
}

/// A quantized model directory, as `eval`, `generate`, `finetune` and `dequantize` read it.
public enum QuantizedCheckpoint {
    /// The tensors and metadata that stand for one quantized weight in the output; with a spill
    /// file, its large tensors wait there rather than in memory (`SpillFile`).
    public struct Parts {
        public let tensors: [PendingTensor]
        public let metadata: [String: String]
        public let config: QuantConfig
        public let original: DType

        public init(_ w: QuantizedWeight, name: String, spill: SpillFile? = nil) throws {
            tensors = try QuantizedStorage.tensors(for: w.matrix, name: name, original: w.original).map { try spill?.spilled($0) ?? $0 }
            metadata = QuantizedStorage.metadata(for: w.matrix, name: name, original: w.original)
            config = w.matrix.config
            original = w.original
        }
    }

    /// Writes into `directory` (which must exist): the quantized parts in place of each quantized
    /// weight, every other tensor copied byte for byte, config.json (`modelConfig`) with its
    /// quantization_config, and the source's side files.
    public static func write(from checkpoint: Checkpoint, quantized: [String: QuantizedWeight],
                             modelConfig: [String: Any], to directory: String) throws {
        var parts: [String: Parts] = [:]
        for (name, w) in quantized { parts[name] = try Parts(w, name: name) }
        try write(from: checkpoint, parts: parts, modelConfig: modelConfig, to: directory)
    }

    /// As above, from the weights' parts (made as each weight was quantized).
    public static func write(from checkpoint: Checkpoint, parts: [String: Parts],
                             modelConfig: [String: Any], to directory: String) throws {
        let (pending, metadata) = try contents(of: checkpoint, quantized: parts.mapValues { ($0.tensors, $0.metadata) }) {
            ModelFiles.copied($0, from: $1)
        }
        try CheckpointWriter.write(pending, toDirectory: directory, metadata: metadata)
        var config = modelConfig
        config["quantization_config"] = QuantizedStorage.quantizationConfig(
            configs: Set(parts.values.map(\.config)), computeDType: parts.values.first?.original ?? .f32, skipped: [])
        try ModelFiles.writeJSON(config, to: directory + "/config.json")
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: directory)
    }

    /// The bytes of the weight files (the safetensors and, when sharded, their index) that `write`
    /// makes when each weight `configs` names is quantized so, in lqlora's own layout: what the
    /// memory planner counts. config.json and the side files are not weights and not counted.
    public static func weightFileBytes(from checkpoint: Checkpoint, configs: [String: QuantConfig]) throws -> Int {
        var planned: [String: ([PlannedTensor], [String: String])] = [:]
        for (name, config) in configs {
            let entry = try checkpoint.entry(name)
            planned[name] = QuantizedStorage.planned(config: config, rows: entry.shape[0], cols: entry.shape[1], name: name, original: entry.dtype)
        }
        let (tensors, metadata) = try contents(of: checkpoint, quantized: planned) { entry, _ in
            PlannedTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape)
        }
        return try CheckpointWriter.writtenBytes(tensors, metadata: metadata)
    }

    /// The output's tensors in checkpoint order, each quantized weight's parts in its place and
    /// every other tensor as `unchanged` gives it, and the file metadata with each weight's entry.
    static func contents<T: TensorHeader>(of checkpoint: Checkpoint, quantized: [String: (tensors: [T], metadata: [String: String])],
                                          unchanged: (TensorEntry, SafeTensorsFile) -> T) throws -> ([T], [String: String]) {
        var tensors: [T] = []
        var metadata = SafeTensorsWriter.defaultMetadata
        for name in checkpoint.tensorNames {
            if let q = quantized[name] {
                tensors += q.tensors
                metadata.merge(q.metadata) { a, _ in a }
            } else {
                let (file, entry) = try checkpoint.locate(name)
                tensors.append(unchanged(entry, file))
            }
        }
        return (tensors, metadata)
    }
}

/// Which weights of a checkpoint are stored quantized, in either family (NormalFloat / LQ-LoRA's
/// grid, or GPTQ/RTN integers in AutoGPTQ's or lqlora's layout), and each one's shape and
/// dequantized values: what `dequantize` and `merge` walk a checkpoint's tensors with.
public struct QuantizedWeights {
    public let checkpoint: Checkpoint
    /// NormalFloat-family weights ("….weight").
    public let normalFloat: Set<String>
    /// The GPTQ checkpoint's settings (nil when it is not one) and its modules ("….q_proj").
    public let gptq: GPTQFormat.Settings?
    public let gptqModules: Set<String>

    public init(_ checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        normalFloat = Set(QuantizedStorage.quantizedWeights(in: checkpoint))
        gptq = try checkpoint.config().flatMap { try GPTQFormat.Settings(modelConfig: $0, path: checkpoint.directory + "/config.json") }
        gptqModules = Set(gptq == nil ? [] : GPTQFormat.modules(in: checkpoint))
    }

    public var count: Int { normalFloat.count + gptqModules.count }

    static func module(ofWeight name: String) -> String { name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name }

    /// The weight ("….weight") a stored tensor is part of: a quantized weight's, or the tensor itself.
    public func weight(owning tensor: String) -> String {
        GPTQFormat.owner(of: tensor, in: gptqModules).map { $0 + ".weight" } ?? QuantizedStorage.owner(of: tensor, in: normalFloat) ?? tensor
    }

    public func isGPTQ(_ weight: String) -> Bool { gptqModules.contains(Self.module(ofWeight: weight)) }

    public func isQuantized(_ weight: String) -> Bool { normalFloat.contains(weight) || isGPTQ(weight) }

    /// [out, in] of a weight in any storage, without reading its values.
    public func shape(_ weight: String) throws -> [Int] {
        if isGPTQ(weight) { return try GPTQFormat.shape(of: Self.module(ofWeight: weight), in: checkpoint, bits: gptq!.bits) }
        if normalFloat.contains(weight) { return try QuantizedStorage.describe(weight, in: checkpoint).shape }
        return try checkpoint.entry(weight).shape
    }

    /// The weight as an fp32 copy: dequantized by the kernels (GPTQ: scale·(code − zero) through
    /// g_idx; exact in fp32 for fp16 scales), or the stored tensor widened.
    public func dense(_ weight: String) throws -> Tensor {
        if isGPTQ(weight) { return try GPTQFormat.load(Self.module(ofWeight: weight), from: checkpoint, settings: gptq!).dequantized() }
        if normalFloat.contains(weight) { return try QuantizedStorage.load(weight, from: checkpoint).matrix.dequantize() }
        return try checkpoint.floatTensor(weight).copy()
    }

}
