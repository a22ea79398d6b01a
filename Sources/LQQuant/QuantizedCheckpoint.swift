import Foundation
import LQFormats

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
        var pending: [PendingTensor] = []
        var metadata = SafeTensorsWriter.defaultMetadata
        for name in checkpoint.tensorNames {
            if let p = parts[name] {
                pending += p.tensors
                metadata.merge(p.metadata) { a, _ in a }
            } else {
                let (file, entry) = try checkpoint.locate(name)
                pending.append(ModelFiles.copied(entry, from: file))
            }
        }
        try CheckpointWriter.write(pending, toDirectory: directory, metadata: metadata)
        var config = modelConfig
        config["quantization_config"] = QuantizedStorage.quantizationConfig(
            configs: Set(parts.values.map(\.config)), computeDType: parts.values.first?.original ?? .f32, skipped: [])
        try ModelFiles.writeJSON(config, to: directory + "/config.json")
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: directory)
    }
}
