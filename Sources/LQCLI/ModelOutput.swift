import Foundation
import LQFormats
import LQQuant

/// An output model directory written as a whole: everything goes into a staging directory beside
/// the destination, which is renamed into place only when complete. A failed or killed run leaves
/// the destination untouched.
struct StagedDirectory {
    let destination: String
    let staging: String

    /// Fails if `destination` exists and is not empty, unless `overwrite`.
    init(destination: String, overwrite: Bool) throws {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: destination).standardizedFileURL
        self.destination = url.path
        if fm.fileExists(atPath: self.destination), !overwrite,
           !((try? fm.contentsOfDirectory(atPath: self.destination))?.isEmpty ?? false) {
            throw CLIError("\(self.destination) already exists and is not empty (use --overwrite to replace it)")
        }
        staging = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())").path
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { staging + "/" + name }

    /// Moves the staging directory into place.
    func commit() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        try fm.moveItem(atPath: staging, toPath: destination)
    }

    func abandon() { try? FileManager.default.removeItem(atPath: staging) }
}

/// A user-facing error: one line, no stack of types.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum ModelFiles {
    /// Copies the model's side files (tokenizer, generation config, ...) but not its weights or config.json.
    static func copySideFiles(from source: String, to dir: String) throws {
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: source) {
            if name.hasSuffix(".safetensors") || name == Checkpoint.indexFileName || name == "config.json" || name.hasPrefix(".") { continue }
            if name == "quant_report.json" || name == "adapter" { continue }
            try fm.copyItem(atPath: source + "/" + name, toPath: dir + "/" + name)
        }
    }

    /// Writes a JSON object with sorted keys, pretty-printed.
    static func writeJSON(_ object: Any, to path: String) throws {
        try Data((JSONText.serialize(object) + "\n").utf8).writeAtomically(to: path)
    }

    /// A tensor copied byte for byte from a checkpoint.
    static func copied(_ entry: TensorEntry, from file: SafeTensorsFile) -> PendingTensor {
        PendingTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape) { raw in
            raw.copyMemory(from: file.bytes(of: entry))
        }
    }
}

extension StagedDirectory {
    /// Writes a quantized model: the quantized parts in place of each quantized weight, every other
    /// tensor copied byte for byte, config.json with its quantization_config, and the side files.
    func writeQuantizedModel(from checkpoint: Checkpoint, quantized: [String: (QuantizedMatrix, DType)],
                             modelConfig: [String: Any]) throws {
        var pending: [PendingTensor] = []
        var metadata = SafeTensorsWriter.defaultMetadata
        for name in checkpoint.tensorNames {
            if let (q, original) = quantized[name] {
                pending += QuantizedStorage.tensors(for: q, name: name, original: original)
                metadata.merge(QuantizedStorage.metadata(for: q, name: name, original: original)) { a, _ in a }
            } else {
                let (file, entry) = try checkpoint.locate(name)
                pending.append(ModelFiles.copied(entry, from: file))
            }
        }
        try CheckpointWriter.write(pending, toDirectory: staging, metadata: metadata)
        var config = modelConfig
        config["quantization_config"] = QuantizedStorage.quantizationConfig(
            configs: Set(quantized.values.map(\.0.config)), computeDType: quantized.values.first?.1 ?? .f32, skipped: [])
        try ModelFiles.writeJSON(config, to: path("config.json"))
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: staging)
    }
}
