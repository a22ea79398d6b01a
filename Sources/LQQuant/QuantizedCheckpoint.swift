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
    /// Writes into `directory` (which must exist): the quantized parts in place of each quantized
    /// weight, every other tensor copied byte for byte, config.json (`modelConfig`) with its
    /// quantization_config, and the source's side files.
    public static func write(from checkpoint: Checkpoint, quantized: [String: QuantizedWeight],
                             modelConfig: [String: Any], to directory: String) throws {
        var pending: [PendingTensor] = []
        var metadata = SafeTensorsWriter.defaultMetadata
        for name in checkpoint.tensorNames {
            if let w = quantized[name] {
                pending += QuantizedStorage.tensors(for: w.matrix, name: name, original: w.original)
                metadata.merge(QuantizedStorage.metadata(for: w.matrix, name: name, original: w.original)) { a, _ in a }
            } else {
                let (file, entry) = try checkpoint.locate(name)
                pending.append(ModelFiles.copied(entry, from: file))
            }
        }
        try CheckpointWriter.write(pending, toDirectory: directory, metadata: metadata)
        var config = modelConfig
        config["quantization_config"] = QuantizedStorage.quantizationConfig(
            configs: Set(quantized.values.map(\.matrix.config)), computeDType: quantized.values.first?.original ?? .f32, skipped: [])
        try ModelFiles.writeJSON(config, to: directory + "/config.json")
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: directory)
    }
}
