import ArgumentParser
import Foundation
import LQFormats
import LQQuant

/// What `lqlora inspect` reports about a checkpoint.
public struct InspectReport: Codable, Equatable {
    public struct TensorRow: Codable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let bytes: Int
    }

    public struct QuantizedRow: Codable, Equatable {
        public let name: String
        public let shape: [Int]
        public let config: String
        public let bits_per_param: Double
    }

    public let num_tensors: Int
    public let num_parameters: Int
    public let bytes: Int
    public let tensors: [TensorRow]
    /// Quantized weights, when the checkpoint holds any (absent otherwise).
    public let quantized: [QuantizedRow]?
    /// Average storage bits per parameter of the quantized weights.
    public let average_bits: Double?

    public init(checkpoint: Checkpoint) throws {
        let entries = checkpoint.entries.sorted { $0.name < $1.name }
        tensors = entries.map { TensorRow(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, bytes: $0.byteCount) }
        num_tensors = entries.count
        bytes = entries.reduce(0) { $0 + $1.byteCount }
        let weights = QuantizedStorage.quantizedWeights(in: checkpoint)
        let weightSet = Set(weights)
        var rows = try weights.map { name -> QuantizedRow in
            let (config, shape) = try QuantizedStorage.describe(name, in: checkpoint)
            return QuantizedRow(name: name, shape: shape, config: config.name, bits_per_param: config.bitsPerParameter)
        }
        let gptq = try checkpoint.config().flatMap { try GPTQFormat.Settings(modelConfig: $0, path: checkpoint.directory + "/config.json") }
        let gptqModules = gptq == nil ? [] : GPTQFormat.modules(in: checkpoint)
        if let gptq {
            rows += try gptqModules.map { module in
                let shape = try GPTQFormat.shape(of: module, in: checkpoint, bits: gptq.bits)
                return QuantizedRow(name: module + ".weight", shape: shape, config: gptq.name, bits_per_param: gptq.bitsPerParameter(columns: shape[1]))
            }
        }
        let gptqSet = Set(gptqModules)
        // Parameters: the logical count, so a quantized weight counts its matrix, not its parts.
        let plain = entries.filter { QuantizedStorage.owner(of: $0.name, in: weightSet) == nil && GPTQFormat.owner(of: $0.name, in: gptqSet) == nil }
            .reduce(0) { $0 + $1.count }
        let quantizedParams = rows.reduce(0) { $0 + $1.shape.reduce(1, *) }
        num_parameters = plain + quantizedParams
        quantized = rows.isEmpty ? nil : rows
        average_bits = rows.isEmpty ? nil
            : rows.reduce(0.0) { $0 + $1.bits_per_param * Double($1.shape.reduce(1, *)) } / Double(quantizedParams)
    }

    /// The `--json` form: one object, keys sorted.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The human form: a table of tensors, then totals.
    public func text() -> String {
        let rows = tensors.map { t in
            [t.name, t.dtype, "[" + t.shape.map(String.init).joined(separator: ", ") + "]",
             Format.grouped(t.shape.reduce(1, *)), Format.grouped(t.bytes)]
        }
        let table = Format.table(header: ["tensor", "dtype", "shape", "parameters", "bytes"], rows: rows, rightAligned: [3, 4])
        var text = table + "\n\n\(num_tensors) tensors, \(Format.grouped(num_parameters)) parameters, \(Format.bytes(bytes))"
        if let quantized, let average_bits {
            let qrows = quantized.map { [$0.name, $0.config, "[" + $0.shape.map(String.init).joined(separator: ", ") + "]",
                                         String(format: "%.3f", $0.bits_per_param)] }
            text += "\n\nquantized weights\n" + Format.table(header: ["weight", "format", "shape", "bits/param"], rows: qrows, rightAligned: [3])
            let count = quantized.reduce(0) { $0 + $1.shape.reduce(1, *) }
            text += "\n\n\(quantized.count) quantized weights, \(Format.grouped(count)) parameters at "
                + String(format: "%.3f", average_bits) + " bits per parameter"
        }
        return text
    }
}

/// A few lines about config.json: what kind of model this is.
func configSummary(_ config: [String: Any]) -> String {
    let keys: [(String, String)] = [
        ("model_type", "model type"), ("architectures", "architectures"), ("hidden_size", "hidden size"),
        ("intermediate_size", "intermediate size"), ("num_hidden_layers", "layers"),
        ("num_attention_heads", "attention heads"), ("num_key_value_heads", "key/value heads"),
        ("vocab_size", "vocabulary"), ("max_position_embeddings", "max positions"),
        ("torch_dtype", "torch dtype"), ("tie_word_embeddings", "tied embeddings"),
    ]
    var lines: [String] = []
    for (key, label) in keys {
        guard let value = config[key] else { continue }
        let text: String
        switch value {
        case let list as [Any]: text = list.map { "\($0)" }.joined(separator: ", ")
        case let n as NSNumber where String(cString: n.objCType) == "c": text = n.boolValue ? "true" : "false"
        default: text = "\(value)"
        }
        lines.append("  \(label): \(text)")
    }
    if let q = config["quantization_config"] as? [String: Any] {
        let method = q["quant_method"] as? String ?? "?"
        let type = q["bnb_4bit_quant_type"] as? String
        let gptq = method == "gptq" ? " \(q["bits"] ?? "?")-bit, group size \(q["group_size"] ?? "?"), desc_act \(q["desc_act"] ?? false)" : ""
        lines.append("  quantization: \(method)\(type.map { " " + $0 } ?? "")\(gptq)")
    }
    return lines.isEmpty ? "" : "config.json\n" + lines.joined(separator: "\n")
}

/// `lqlora inspect PATH [--json]`.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors of a safetensors file or model directory (single or sharded).")

    @Argument(help: "A .safetensors file or a model directory.")
    var path: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        try CommandFailure.exits("inspect") {
            let checkpoint = try Checkpoint(path: path)
            let config = try checkpoint.config()
            let report = try InspectReport(checkpoint: checkpoint)
            if json {
                print(try report.json())
                return
            }
            print(report.text())
            if let config {
                let summary = configSummary(config)
                if !summary.isEmpty { print("\n" + summary) }
            }
        }
    }
}
