import CKernels
import Foundation
import LQFormats
import LQQuant

/// An output model directory written as a whole: everything goes into a staging directory beside
/// the destination, which replaces it only when complete, in one step (the two paths are
/// exchanged), so the destination holds the complete old or the complete new output at every
/// instant. A failed run removes its staging directory; a killed one leaves it, and the next run
/// for the same destination removes it.
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
        let parent = url.deletingLastPathComponent().path
        Self.removeStale(in: parent, name: url.lastPathComponent)
        staging = parent + "/" + Self.stagingPrefix(url.lastPathComponent) + "\(getpid())"
        try? fm.removeItem(atPath: staging)
        do { try fm.createDirectory(atPath: staging, withIntermediateDirectories: true) } catch {
            throw CLIError("cannot create \(staging) beside the output: \(error.localizedDescription)")
        }
    }

    static func stagingPrefix(_ name: String) -> String { ".\(name).partial-" }

    /// Staging directories for `name` whose process is gone (a killed run's, or an old output a
    /// killed run had swapped out but not yet deleted).
    static func removeStale(in parent: String, name: String) {
        let prefix = stagingPrefix(name)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count).prefix(while: \.isNumber)), pid != getpid(), lq_process_alive(pid) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: parent + "/" + entry)
        }
    }

    func path(_ name: String) -> String { staging + "/" + name }

    /// Puts the staging directory in place of the destination.
    func commit() throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: destination) else {
            do { try fm.moveItem(atPath: staging, toPath: destination) } catch {
                throw CLIError("cannot move \(staging) to \(destination): \(error.localizedDescription)")
            }
            return
        }
        // One step: the new output takes the destination, the old one the staging path, then goes.
        if lq_exchange_paths(staging, destination) == 0 {
            try? fm.removeItem(atPath: staging)
            return
        }
        // A file system that cannot exchange: the old output aside, the new one in, the old one deleted.
        let aside = staging + "-old"
        do {
            try fm.moveItem(atPath: destination, toPath: aside)
            try fm.moveItem(atPath: staging, toPath: destination)
        } catch {
            throw CLIError("cannot replace \(destination) with \(staging): \(error.localizedDescription)")
        }
        try? fm.removeItem(atPath: aside)
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
