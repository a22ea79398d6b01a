import Foundation
import LQFormats
import LQModel
import LQTensor

/// The adapter matrices being trained, in a fixed order under their PEFT names, with the
/// gradient buffers the backward pass accumulates into (one flat list, as the optimizer wants it).
public final class AdapterParameters {
    public let config: AdapterConfig
    public let names: [String]
    public let values: [Tensor]
    public let grads: [Tensor]

    /// Collects the adapters attached to `model`'s target linears (allocating their gradients).
    public init(model: LlamaModel, config: AdapterConfig, dropout: Float) {
        self.config = config
        var names: [String] = [], values: [Tensor] = [], grads: [Tensor] = []
        for (i, layer) in model.layers.enumerated() {
            for (module, linear) in layer.linears {
                guard let lora = linear.lora else { continue }
                let grad = LoRA(a: Tensor(zeros: lora.a.shape), b: Tensor(zeros: lora.b.shape), scale: lora.scale)
                linear.loraGrad = grad
                linear.loraDropout = dropout
                names += [LlamaModel.adapterKey(layer: i, module: module, matrix: "A"), LlamaModel.adapterKey(layer: i, module: module, matrix: "B")]
                values += [lora.a, lora.b]
                grads += [grad.a, grad.b]
            }
        }
        self.names = names
        self.values = values
        self.grads = grads
    }

    /// Loose tensors (tests, tools): gradients allocated alongside.
    public init(names: [String], values: [Tensor], config: AdapterConfig = AdapterConfig(rank: 1, alpha: 1, targetModules: [])) {
        self.config = config
        self.names = names
        self.values = values
        grads = values.map { Tensor(zeros: $0.shape) }
    }

    /// Attaches fresh adapters to every linear whose short name is a target: A as PEFT initialises it
    /// (kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in)), B zero, so training starts at the base model.
    public static func attachFresh(to model: LlamaModel, config: AdapterConfig, dropout: Float, rng: inout SeededGenerator) -> AdapterParameters {
        for layer in model.layers {
            for (module, linear) in layer.linears where config.targets(module) {
                let bound = 1 / Float(linear.inFeatures).squareRoot()
                let a = Tensor(zeros: [config.rank, linear.inFeatures])
                for i in 0..<a.count { a.pointer[i] = (Float(rng.next() >> 40) * 0x1p-24 * 2 - 1) * bound }
                linear.lora = LoRA(a: a, b: Tensor(zeros: [linear.outFeatures, config.rank]), scale: config.scale)
            }
        }
        return AdapterParameters(model: model, config: config, dropout: dropout)
    }

    public var parameterCount: Int { values.reduce(0) { $0 + $1.count } }

    public func zeroGradients() {
        for g in grads { g.buffer.update(repeating: 0) }
    }

    /// √(Σ g²) over every gradient.
    public func gradientNorm() -> Double {
        var s = 0.0
        for g in grads { for i in 0..<g.count { s += Double(g.pointer[i]) * Double(g.pointer[i]) } }
        return s.squareRoot()
    }

    /// adapter_model.safetensors (fp32) and adapter_config.json, as PEFT's save_pretrained writes them.
    public func save(to directory: String, base: String?, dropout: Double) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tensors = zip(names, values).map { PendingTensor(name: $0, tensor: $1) }
        try SafeTensorsWriter.write(tensors, to: directory + "/adapter_model.safetensors")
        try Data(JSONText.serialize(config.peftJSON(base: base, dropout: dropout)).utf8).writeAtomically(to: directory + "/adapter_config.json")
    }

    /// Copies values from a saved adapter (a checkpoint's), every tensor present with its shape.
    public func load(from directory: String) throws {
        let file = try SafeTensorsFile(path: directory + "/adapter_model.safetensors")
        for (name, value) in zip(names, values) {
            guard file.contains(name) else { throw ModelError.missingWeight(path: file.path, tensor: name) }
            let t = try file.floatTensor(name)
            guard t.shape == value.shape else { throw ModelError.badShape(path: file.path, tensor: name, expected: value.shape, actual: t.shape) }
            value.pointer.update(from: t.pointer, count: t.count)
        }
    }
}

extension AdapterConfig {
    /// Whether a module ("self_attn.q_proj") is a target, by its short or full name.
    public func targets(_ module: String) -> Bool {
        targetModules.contains(String(module.split(separator: ".").last!)) || targetModules.contains(module)
    }
}
