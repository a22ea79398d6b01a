import Foundation
import LQFormats
import LQModel
import LQTensor

/// The adapter matrices being trained and their gradients: two mirrored slabs (as llm.c keeps
/// parameters and gradients), each matrix a view in a fixed order under its PEFT name. The model's
/// LoRALinear layers compute with views of the value slab; the backward pass finds each one's
/// gradient views here (this is the GradientSink it is given), so the model holds no training state.
public final class AdapterParameters: GradientSink {
    public let config: AdapterConfig
    public let names: [String]
    public let values: [Tensor]
    public let grads: [Tensor]
    /// Each trained layer's first index into values/grads (a LoRA adapter's A, then B; a
    /// trainable layer's parameters in its order).
    private let firstIndex: [ObjectIdentifier: Int]
    private let parameterCounts: [ObjectIdentifier: Int]

    /// Collects the adapters (and other trainable layers) attached to `model`'s linears, moving
    /// their tensors into the value slab, and sets the adapters' dropout.
    public init(model: LlamaModel, config: AdapterConfig, dropout: Float) {
        self.config = config
        var names: [String] = [], tensors: [Tensor] = [], rebinds: [(Int, Int, ([Tensor]) -> Void)] = []
        var firstIndex: [ObjectIdentifier: Int] = [:], counts: [ObjectIdentifier: Int] = [:]
        for (i, layer) in model.layers.enumerated() {
            for (p, linear) in layer.linears {
                let module = LinearSite.projection(layer: i, p).module
                let owned: [(String, Tensor)]
                if let adapter = linear as? LoRALinear {
                    adapter.dropout = dropout
                    owned = [(PEFTKeys.lora(module: module, matrix: .a), adapter.a), (PEFTKeys.lora(module: module, matrix: .b), adapter.b)]
                    rebinds.append((tensors.count, 2, { adapter.rebind(a: $0[0], b: $0[1]) }))
                } else if let trainable = linear as? any TrainableLinear {
                    owned = trainable.parameters.map { (PEFTKeys.prefix + module + "." + $0.suffix, $0.value) }
                    rebinds.append((tensors.count, owned.count, { trainable.rebind($0) }))
                } else {
                    continue
                }
                firstIndex[ObjectIdentifier(linear)] = tensors.count
                counts[ObjectIdentifier(linear)] = owned.count
                names += owned.map(\.0)
                tensors += owned.map(\.1)
            }
        }
        let values = Self.slab(tensors.map(\.shape)), grads = Self.slab(tensors.map(\.shape))
        for (value, old) in zip(values, tensors) { value.pointer.update(from: old.pointer, count: value.count) }
        for (start, count, rebind) in rebinds { rebind(Array(values[start..<(start + count)])) }
        self.names = names
        self.values = values
        self.grads = grads
        self.firstIndex = firstIndex
        parameterCounts = counts
    }

    /// Loose tensors (tests, tools): gradients allocated alongside.
    public init(names: [String], values: [Tensor], config: AdapterConfig = AdapterConfig(rank: 1, alpha: 1, targetModules: [])) {
        self.config = config
        self.names = names
        self.values = values
        grads = Self.slab(values.map(\.shape))
        firstIndex = [:]
        parameterCounts = [:]
    }

    /// Every gradient as one buffer, in order (the slab's views): what data-parallel ranks sum in one call.
    public var gradientSlab: UnsafeMutableBufferPointer<Float> { Self.whole(grads) }

    /// Every value as one buffer, when they are one slab (always, but for loose tensors).
    public var valueSlab: UnsafeMutableBufferPointer<Float>? {
        zip(values, values.dropFirst()).allSatisfy({ $0.pointer + $0.count == $1.pointer }) ? Self.whole(values) : nil
    }

    private static func whole(_ views: [Tensor]) -> UnsafeMutableBufferPointer<Float> {
        guard let first = views.first else { return UnsafeMutableBufferPointer(start: nil, count: 0) }
        return UnsafeMutableBufferPointer(start: first.pointer, count: views.reduce(0) { $0 + $1.count })
    }

    /// Views of one zeroed allocation, one per shape, in order.
    private static func slab(_ shapes: [[Int]]) -> [Tensor] {
        let counts = shapes.map { $0.reduce(1, *) }
        let storage = TensorStorage(byteCount: max(counts.reduce(0, +), 1) * MemoryLayout<Float>.stride)
        var offset = 0
        return zip(shapes, counts).map { shape, count in
            defer { offset += count }
            return Tensor(shape: shape, storage: storage, offset: offset)
        }
    }

    public func adapterGradients(_ adapter: LoRALinear) -> (a: Tensor, b: Tensor)? {
        firstIndex[ObjectIdentifier(adapter)].map { (grads[$0], grads[$0 + 1]) }
    }

    public func gradients(of layer: any TrainableLinear) -> [Tensor]? {
        let id = ObjectIdentifier(layer)
        guard let start = firstIndex[id], let count = parameterCounts[id] else { return nil }
        return Array(grads[start..<(start + count)])
    }

    /// Attaches fresh adapters to every linear whose short name is a target: A as PEFT initialises it
    /// (kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in)), B zero, so training starts at the base model.
    public static func attachFresh(to model: LlamaModel, config: AdapterConfig, dropout: Float, rng: inout SeededGenerator) -> AdapterParameters {
        for layer in model.layers {
            for (p, linear) in layer.linears where config.targets(p.module) {
                let bound = 1 / Float(linear.inFeatures).squareRoot()
                let a = Tensor(zeros: [config.rank, linear.inFeatures])
                for i in 0..<a.count { a.pointer[i] = (Float(rng.next() >> 40) * 0x1p-24 * 2 - 1) * bound }
                layer[p] = LoRALinear(base: linear, a: a, b: Tensor(zeros: [linear.outFeatures, config.rank]), scale: config.scale)
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
