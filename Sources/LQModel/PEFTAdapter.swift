import Foundation
import LQFormats
import LQTensor

/// The two matrices of a LoRA pair as PEFT names them: ΔW = scale · B · A, A [rank, in], B [out, rank].
public enum LoRAMatrix: String, CaseIterable, Sendable {
    case a = "lora_A"
    case b = "lora_B"
}

/// PEFT's tensor names in adapter_model.safetensors: the one place they are spelled.
public enum PEFTKeys {
    /// What PEFT's PeftModel wrapper puts before a module path of the base model.
    public static let prefix = "base_model.model."

    /// The key of `matrix` for `module`, a full module path of the base model such as
    /// "model.layers.3.self_attn.q_proj": "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight".
    public static func lora(module: String, matrix: LoRAMatrix) -> String {
        prefix + module + "." + matrix.rawValue + ".weight"
    }

    /// The module of a weight name: "model.layers.3.self_attn.q_proj.weight" → "model.layers.3.self_attn.q_proj".
    public static func module(ofWeight name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }
}

/// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), as PEFT's
/// `PeftModel.from_pretrained` and `lqlora eval/generate/merge --adapter` read it.
public enum PEFTAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    /// One adapted module: its full path and PEFT's A [rank, in] and B [out, rank].
    public struct Pair: @unchecked Sendable {
        public let module: String
        public let a: Tensor
        public let b: Tensor

        public init(module: String, a: Tensor, b: Tensor) {
            self.module = module
            self.a = a
            self.b = b
        }
    }

    /// PEFT's target_modules for these module paths: their last components, sorted.
    public static func targetModules(_ modules: [String]) -> [String] {
        Array(Set(modules.map { String($0.split(separator: ".").last!) })).sorted()
    }

    /// The dtype A and B are stored in: fp32, as PEFT keeps adapter weights by default and as
    /// lqlora loads and trains them, so a written adapter holds exactly what was computed.
    public static let storedDType = DType.f32

    /// A [rank, in] and B [out, rank] of `module`, a base weight of out × in, as the file names and stores them.
    public static func planned(module: String, outFeatures: Int, inFeatures: Int, rank: Int) -> (a: PlannedTensor, b: PlannedTensor) {
        (PlannedTensor(name: PEFTKeys.lora(module: module, matrix: .a), dtype: storedDType, shape: [rank, inFeatures]),
         PlannedTensor(name: PEFTKeys.lora(module: module, matrix: .b), dtype: storedDType, shape: [outFeatures, rank]))
    }

    /// The size of the adapter_model.safetensors `write` makes for these modules (each with its
    /// base weight's out × in) at `rank`, before any factor exists.
    public static func weightsFileBytes(modules: [(module: String, outFeatures: Int, inFeatures: Int)], rank: Int) -> Int {
        SafeTensorsWriter.fileSize(modules.flatMap { m -> [PlannedTensor] in
            let p = planned(module: m.module, outFeatures: m.outFeatures, inFeatures: m.inFeatures, rank: rank)
            return [p.a, p.b]
        })
    }

    /// Writes `pairs` (A then B per module, in the given order) and an adapter_config.json with
    /// `rank`, `alpha` and `base` into `directory`, creating it.
    public static func write(_ pairs: [Pair], rank: Int, alpha: Double, base: String?, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var tensors: [PendingTensor] = []
        for p in pairs {
            let header = planned(module: p.module, outFeatures: p.b.shape[0], inFeatures: p.a.shape[1], rank: rank)
            tensors += [PendingTensor(header.a, tensor: p.a), PendingTensor(header.b, tensor: p.b)]
        }
        try SafeTensorsWriter.write(tensors, to: directory + "/" + weightsFile)
        let config = AdapterConfig(rank: rank, alpha: alpha, targetModules: targetModules(pairs.map(\.module)))
        try ModelFiles.writeJSON(config.peftJSON(base: base), to: directory + "/" + configFile)
    }
}
