import Foundation
import LQFormats
import LQTensor

/// A PEFT LoRA adapter's settings (adapter_config.json).
public struct AdapterConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var targetModules: [String]
    public var useRSLoRA: Bool

    public init(rank: Int, alpha: Double, targetModules: [String], useRSLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA
    }

    /// adapter_config.json as PEFT writes it (the keys PEFT reads; absent ones take its defaults).
    public func peftJSON(base: String?, dropout: Double = 0) -> [String: Any] {
        ["peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": dropout,
         "target_modules": targetModules, "bias": "none", "fan_in_fan_out": false, "use_rslora": useRSLoRA, "init_lora_weights": true,
         "base_model_name_or_path": base.map { $0 as Any } ?? NSNull(), "inference_mode": true, "modules_to_save": NSNull(),
         "layers_to_transform": NSNull(), "rank_pattern": [String: Any](), "alpha_pattern": [String: Any]()]
    }

    /// PEFT's scaling: alpha / r, or alpha / √r with rsLoRA.
    public var scale: Float { Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }

    public init(directory: String) throws {
        let path = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw ModelError.badConfig(path: path, key: "(file)", detail: "is missing or not a JSON object") }
        guard (json["peft_type"] as? String ?? "LORA") == "LORA" else {
            throw ModelError.unsupported(path: path, what: "peft_type '\(json["peft_type"] ?? "?")'")
        }
        guard let r = (json["r"] as? NSNumber)?.intValue, r > 0 else { throw ModelError.badConfig(path: path, key: "r", detail: "must be a positive integer") }
        rank = r
        alpha = (json["lora_alpha"] as? NSNumber)?.doubleValue ?? Double(r)
        useRSLoRA = json["use_rslora"] as? Bool ?? false
        if let list = json["target_modules"] as? [String] { targetModules = list }
        else if let one = json["target_modules"] as? String { targetModules = [one] }
        else { throw ModelError.badConfig(path: path, key: "target_modules", detail: "must be a list of module names") }
        if let bias = json["bias"] as? String, bias != "none" { throw ModelError.unsupported(path: path, what: "bias '\(bias)'") }
        if (json["rank_pattern"] as? [String: Any])?.isEmpty == false || (json["alpha_pattern"] as? [String: Any])?.isEmpty == false {
            throw ModelError.unsupported(path: path, what: "rank_pattern / alpha_pattern")
        }
    }
}

extension LlamaModel {
    /// Attaches a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) to the
    /// matching linears; every adapted module must have both matrices with the right shapes.
    /// `halfCopiesForDecoding`: decoding reads the adapter in IEEE half (generation; see
    /// `LoRALinear.keepHalfCopiesForDecoding`), everything else in fp32.
    @discardableResult
    public func loadAdapter(directory: String, halfCopiesForDecoding: Bool = false) throws -> AdapterConfig {
        let config = try AdapterConfig(directory: directory)
        let file = try SafeTensorsFile(path: directory + "/adapter_model.safetensors")
        sources.append(directory)
        var attached = 0
        for (i, layer) in layers.enumerated() {
            for (p, linear) in layer.linears where config.targets(p.module) {
                let site = LinearSite.projection(layer: i, p)
                let aKey = PEFTKeys.lora(module: site.module, matrix: .a), bKey = PEFTKeys.lora(module: site.module, matrix: .b)
                guard file.contains(aKey), file.contains(bKey) else {
                    throw ModelError.missingWeight(path: file.path, tensor: file.contains(aKey) ? bKey : aKey)
                }
                let a = try file.floatTensor(aKey).copy(), b = try file.floatTensor(bKey).copy()
                guard a.shape == [config.rank, linear.inFeatures] else {
                    throw ModelError.badShape(path: file.path, tensor: aKey, expected: [config.rank, linear.inFeatures], actual: a.shape)
                }
                guard b.shape == [linear.outFeatures, config.rank] else {
                    throw ModelError.badShape(path: file.path, tensor: bKey, expected: [linear.outFeatures, config.rank], actual: b.shape)
                }
                let adapted = LoRALinear(base: Self.withoutAdapter(linear), a: a, b: b, scale: config.scale)
                if halfCopiesForDecoding { adapted.keepHalfCopiesForDecoding() }
                layer[p] = adapted
                attached += 1
            }
        }
        if attached == 0 {
            throw ModelError.unsupported(path: directory, what: "an adapter whose target_modules \(config.targetModules) match no layer")
        }
        return config
    }

    /// Every adapter folded into its base: W + s·B·A as one dense layer (LoRALinear.fused()), the
    /// model `merge` writes.
    public func fuseAdapters() {
        for layer in layers {
            for (p, linear) in layer.linears { if let adapted = linear as? LoRALinear { layer[p] = adapted.fused() } }
        }
    }

    /// Every adapter removed (their bases back in place).
    public func removeAdapters() {
        for layer in layers { for (p, linear) in layer.linears { layer[p] = Self.withoutAdapter(linear) } }
    }

    /// The operator under any adapter: loading a second adapter replaces the first, as before.
    static func withoutAdapter(_ linear: any LinearOperator) -> any LinearOperator {
        (linear as? LoRALinear)?.base ?? linear
    }
}

extension AdapterConfig {
    /// Whether a module ("self_attn.q_proj") is a target, by its short or full name.
    public func targets(_ module: String) -> Bool {
        targetModules.contains(String(module.split(separator: ".").last!)) || targetModules.contains(module)
    }
}
