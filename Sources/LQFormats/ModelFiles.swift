import Foundation

/// The files of a model directory other than its tensors, as every writer of a model copies them.
public enum ModelFiles {
    /// Copies the model's side files (tokenizer, generation config, ...) but not its weights,
    /// config.json, or what lqlora wrote beside them (quant_report.json, adapter/).
    public static func copySideFiles(from source: String, to dir: String) throws {
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: source) {
            if name.hasSuffix(".safetensors") || name == Checkpoint.indexFileName || name == "config.json" || name.hasPrefix(".") { continue }
            // A quantizer's own files describe the source, not what is written from it.
            if name == "quant_report.json" || name == "quantize_config.json" || name == "adapter" { continue }
            try fm.copyItem(atPath: source + "/" + name, toPath: dir + "/" + name)
        }
    }

    /// Writes a JSON object with sorted keys, pretty-printed.
    public static func writeJSON(_ object: Any, to path: String) throws {
        try Data((JSONText.serialize(object) + "\n").utf8).writeAtomically(to: path)
    }

    /// A tensor copied byte for byte from a checkpoint.
    public static func copied(_ entry: TensorEntry, from file: SafeTensorsFile) -> PendingTensor {
        PendingTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape) { raw in
            raw.copyMemory(from: file.bytes(of: entry))
        }
    }
}
