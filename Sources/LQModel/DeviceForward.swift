import CKernels
import LQQuant
import LQTensor

/// LlamaModel's forward pass on the GPU with its activations kept there between layers: the weights
/// are copied once (quantized matrices in their storage format, everything else as fp32), each
/// operation of a layer runs as a device kernel, and only token ids go in and final hidden states
/// or logits come out. It is a snapshot: adapters changed afterwards are not seen.
public final class DeviceLlama: @unchecked Sendable {
    let gpu: CUDABackend
    let config: LlamaConfig
    let rope: RotaryTable
    let embedTable: DeviceFloats  // [vocab, hidden]
    let layers: [Layer]
    let finalNorm: DeviceFloats
    let head: DeviceLinear
    private var cos: DeviceFloats?, sin: DeviceFloats?
    private var ropePositions = 0
    private var scratch: Scratch?
    private var headInput: DeviceFloats?, logitsBuffer: DeviceFloats?
    /// rows · cols floats of the largest quantized matrix: where GEMMs dequantize it.
    private let quantizedWorkspaceFloats: Int
    private var quantizedWorkspace: DeviceFloats?
    private let loraRank: Int

    struct Layer {
        let inputNorm: DeviceFloats, postNorm: DeviceFloats
        let projections: [DeviceLinear]  // in Projection.allCases order

        subscript(_ p: Projection) -> DeviceLinear { projections[Projection.allCases.firstIndex(of: p)!] }
    }

    /// Copies `model`'s weights to `gpu`.
    public init(model: LlamaModel, gpu: CUDABackend) throws {
        self.gpu = gpu
        config = model.config
        rope = model.rope
        embedTable = try DeviceLinear.widened(model.embed, on: gpu)
        var layers: [Layer] = []
        for layer in model.layers {
            layers.append(Layer(
                inputNorm: try DeviceFloats(gpu, copying: layer.inputNorm), postNorm: try DeviceFloats(gpu, copying: layer.postNorm),
                projections: try Projection.allCases.map { try DeviceLinear(layer[$0], on: gpu) }))
        }
        self.layers = layers
        finalNorm = try DeviceFloats(gpu, copying: model.norm)
        if let lmHead = model.lmHead {
            head = try DeviceLinear(lmHead, on: gpu)
        } else {  // tied: the embedding table is the head
            head = DeviceLinear(base: .dense(embedTable), rows: config.vocabSize, cols: config.hiddenSize, bias: nil, lora: nil)
        }
        let all = layers.flatMap(\.projections) + [head]
        quantizedWorkspaceFloats = all.map { if case .quantized = $0.base { return $0.rows * $0.cols } else { return 0 } }.max() ?? 0
        loraRank = all.map { $0.lora?.rank ?? 0 }.max() ?? 0
    }

    /// How many of its linear layers multiply on the device in their quantized storage (NormalFloat
    /// or uniform integers) rather than widened to fp32.
    public var quantizedLinears: Int {
        (layers.flatMap(\.projections) + [head]).filter { if case .quantized = $0.base { return true } else { return false } }.count
    }

    /// The final normalised hidden states [batch·length, hidden] on the host, as LlamaModel.hiddenStates
    /// computes them; with a cache, continuing after its positions (the cache advances only on success).
    func hiddenStates(_ tokens: [[Int]], cache: KVCache?) throws -> Tensor {
        let c = config
        let batch = tokens.count, length = tokens.first?.count ?? 0, n = batch * length
        let h = c.hiddenSize
        let start = cache?.length ?? 0
        let out = Tensor(uninitialized: [n, h])
        guard n > 0 else { return out }
        let ids = tokens.flatMap { $0 }.map { id -> Int32 in
            precondition(id >= 0 && id < c.vocabSize, "token id \(id) outside the vocabulary")
            return Int32(id)
        }
        let s = try scratch(rows: n)
        let deviceCache = try cache.map { try $0.deviceState(for: self, batch: batch) }
        try gpu.gatherRows(embedTable.pointer, width: h, ids: ids, into: s.x.pointer)
        let (cos, sin) = try ropeTables(positions: start + length)
        for l in layers.indices {
            let kernels = DeviceBlockKernels(model: self, layer: l, scratch: s, rows: n, batch: batch, length: length, start: start,
                                             cos: cos, sin: sin, cache: cache.flatMap { c in deviceCache.map { (c, $0) } })
            _ = try llamaBlock(kernels, s.x)
        }
        try gpu.rmsNorm(s.x.pointer, weight: finalNorm.pointer, rows: n, width: h, eps: c.rmsNormEps, into: s.normed.pointer)
        try s.normed.download(into: out.pointer, count: n * h)
        return out
    }

    /// Logits [n, vocab] on the host for hidden states [n, hidden] from the host.
    func logits(_ hidden: Tensor) throws -> Tensor {
        let n = hidden.shape[0], vocab = config.vocabSize
        let out = Tensor(uninitialized: [n, vocab])
        guard n > 0 else { return out }
        try headLogits(hidden.pointer, rows: n).download(into: out.pointer, count: n * vocab)
        return out
    }

    /// −log p(target) for the given rows of host hidden states [*, hidden], as
    /// LlamaModel.negativeLogLikelihoods: the logits stay on the device, only one number per row returns.
    func negativeLogLikelihoods(_ hidden: Tensor, rows: Range<Int>, targets: [Int]) throws -> [Double] {
        let h = config.hiddenSize, vocab = config.vocabSize
        let chunk = max(1, min(rows.count, (1 << 25) / vocab))  // logits of at most 128 MiB at once
        var out: [Double] = []
        out.reserveCapacity(rows.count)
        var r = rows.lowerBound
        while r < rows.upperBound {
            let r1 = min(rows.upperBound, r + chunk)
            let logits = try headLogits(hidden.pointer + r * h, rows: r1 - r)
            let ids = targets[(r - rows.lowerBound)..<(r1 - rows.lowerBound)].map { id -> Int32 in
                precondition(id >= 0 && id < vocab, "target id \(id) outside the vocabulary")
                return Int32(id)
            }
            out += try gpu.tokenNLL(logits.pointer, vocab: vocab, targets: ids)
            r = r1
        }
        return out
    }

    /// The LM head's logits [n, vocab] on the device for n host rows of hidden states, in buffers
    /// kept between calls (grown when a call needs more rows).
    private func headLogits(_ hidden: UnsafePointer<Float>, rows n: Int) throws -> DeviceFloats {
        let h = config.hiddenSize, vocab = config.vocabSize
        if (headInput?.count ?? 0) < n * h { headInput = nil; headInput = try DeviceFloats(gpu, count: n * h) }
        if (logitsBuffer?.count ?? 0) < n * vocab { logitsBuffer = nil; logitsBuffer = try DeviceFloats(gpu, count: n * vocab) }
        try headInput!.upload(hidden, count: n * h)
        try apply(head, headInput!, n, into: logitsBuffer!)
        return logitsBuffer!
    }

    /// y = x·Wᵀ (+ bias) (+ scale·(x·Aᵀ)·Bᵀ) for n rows.
    func apply(_ linear: DeviceLinear, _ x: DeviceFloats, _ n: Int, into y: DeviceFloats) throws {
        switch linear.base {
        case let .dense(w):
            try gpu.denseProduct(w.pointer, rows: linear.rows, cols: linear.cols, x: x.pointer, n: n, y: y.pointer)
        case let .quantized(m, _):
            if n > Int(LQ_CUDA_GEMV_MAX_ROWS) && quantizedWorkspace == nil {
                quantizedWorkspace = try DeviceFloats(gpu, count: quantizedWorkspaceFloats)
            }
            try gpu.quantizedProduct(m, rows: linear.rows, cols: linear.cols, x: x.pointer, n: n,
                                     workspace: quantizedWorkspace?.pointer, y: y.pointer)
        }
        if let bias = linear.bias { try gpu.addBias(y.pointer, bias.pointer, rows: n, width: linear.rows) }
        if let lora = linear.lora {
            let ax = try scratch(rows: n).lora
            try gpu.denseProduct(lora.a.pointer, rows: lora.rank, cols: linear.cols, x: x.pointer, n: n, y: ax.pointer)
            try gpu.denseProduct(lora.b.pointer, rows: linear.rows, cols: lora.rank, x: ax.pointer, n: n, alpha: lora.scale, beta: 1,
                                 y: y.pointer)
        }
    }

    /// cos/sin tables covering `positions`, uploaded again whenever the host tables grow.
    private func ropeTables(positions: Int) throws -> (UnsafePointer<Float>, UnsafePointer<Float>) {
        rope.ensure(positions: positions)
        if rope.positions > ropePositions || cos == nil {
            cos = try DeviceFloats(gpu, copying: rope.cos)
            sin = try DeviceFloats(gpu, copying: rope.sin)
            ropePositions = rope.positions
        }
        return (UnsafePointer(cos!.pointer), UnsafePointer(sin!.pointer))
    }

    /// Activation buffers for up to `rows` rows, kept between calls (decoding reuses them every token).
    func scratch(rows: Int) throws -> Scratch {
        if let scratch, scratch.rows >= rows { return scratch }
        scratch = nil  // free the smaller set first
        let made = try Scratch(gpu: gpu, rows: rows, config: config, loraRank: loraRank)
        scratch = made
        return made
    }

    final class Scratch {
        let rows: Int
        let x, normed, q, k, v, attention, projected, gate, up, lora: DeviceFloats

        init(gpu: CUDABackend, rows n: Int, config c: LlamaConfig, loraRank: Int) throws {
            rows = n
            let h = c.hiddenSize, qd = c.headCount * c.headDim, kvd = c.kvHeadCount * c.headDim
            x = try DeviceFloats(gpu, count: n * h)
            normed = try DeviceFloats(gpu, count: n * h)
            q = try DeviceFloats(gpu, count: n * qd)
            k = try DeviceFloats(gpu, count: n * kvd)
            v = try DeviceFloats(gpu, count: n * kvd)
            attention = try DeviceFloats(gpu, count: n * qd)
            projected = try DeviceFloats(gpu, count: n * h)
            gate = try DeviceFloats(gpu, count: n * c.intermediateSize)
            up = try DeviceFloats(gpu, count: n * c.intermediateSize)
            lora = try DeviceFloats(gpu, count: n * max(loraRank, 1))
        }
    }
}

/// A linear layer's weights on the device.
struct DeviceLinear {
    enum Base {
        case dense(DeviceFloats)  // [rows, cols]
        /// A quantized matrix (NormalFloat or uniform integers) on the device; the host matrix it
        /// came from keeps that copy alive.
        case quantized(OpaquePointer, owner: any Sendable)
    }

    struct Adapter {
        let a: DeviceFloats, b: DeviceFloats
        let rank: Int
        let scale: Float
    }

    let base: Base
    let rows: Int, cols: Int
    let bias: DeviceFloats?
    let lora: Adapter?

    init(base: Base, rows: Int, cols: Int, bias: DeviceFloats?, lora: Adapter?) {
        self.base = base
        self.rows = rows
        self.cols = cols
        self.bias = bias
        self.lora = lora
    }

    init(_ linear: any LinearOperator, on gpu: CUDABackend) throws {
        rows = linear.outFeatures
        cols = linear.inFeatures
        let adapter = linear as? LoRALinear, frozen = adapter?.base ?? linear
        if let q = frozen as? QuantizedLinear {
            base = .quantized(try q.weight.deviceMatrix(on: gpu), owner: q.weight)
        } else if let u = frozen as? UniformLinear {
            base = .quantized(try u.weight.deviceMatrix(on: gpu), owner: u.weight)
        } else {
            base = .dense(try Self.widened(frozen, on: gpu))
        }
        bias = try linear.bias.map { try DeviceFloats(gpu, copying: $0) }
        lora = try adapter.map {
            Adapter(a: try DeviceFloats(gpu, copying: $0.a), b: try DeviceFloats(gpu, copying: $0.b), rank: $0.rank, scale: $0.scale)
        }
    }

    /// The weight as fp32 on the device, widened (or dequantized) on the host a slice of rows at a
    /// time, so no fp32 copy of a large matrix ever exists on the host.
    static func widened(_ linear: any LinearOperator, on gpu: CUDABackend) throws -> DeviceFloats {
        let rows = linear.outFeatures, cols = linear.inFeatures
        let device = try DeviceFloats(gpu, count: rows * cols)
        if let dense = linear as? DenseLinear {
            try device.upload(dense.weight.pointer, count: rows * cols)
            return device
        }
        let slice = max(1, (1 << 20) / max(cols, 1))
        let host = Tensor(uninitialized: [min(slice, rows), cols])
        for r0 in stride(from: 0, to: rows, by: slice) {
            let r1 = min(rows, r0 + slice)
            for r in r0..<r1 { linear.weightRow(r, into: host.pointer + (r - r0) * cols) }
            try device.upload(host.pointer, count: (r1 - r0) * cols, at: r0 * cols)
        }
        return device
    }
}

/// A KV cache's device side: keys and values per layer [batch, capacity, kvHeads·headDim].
final class DeviceKVCache {
    unowned let owner: DeviceLlama
    let batch: Int
    let keys: [DeviceFloats], values: [DeviceFloats]

    init(owner: DeviceLlama, batch: Int, capacity: Int) throws {
        self.owner = owner
        self.batch = batch
        let c = owner.config, floats = batch * capacity * c.kvHeadCount * c.headDim
        keys = try (0..<c.layerCount).map { _ in try DeviceFloats(owner.gpu, count: floats) }
        values = try (0..<c.layerCount).map { _ in try DeviceFloats(owner.gpu, count: floats) }
    }
}

extension KVCache {
    /// The device side of this cache for `model`, made on first use.
    func deviceState(for model: DeviceLlama, batch: Int) throws -> DeviceKVCache {
        if let d = device, d.owner === model, d.batch == batch { return d }
        precondition(length == 0, "a KV cache filled on the CPU cannot continue on the GPU")
        let made = try DeviceKVCache(owner: model, batch: batch, capacity: capacity)
        device = made
        return made
    }
}

extension LlamaModel {
    /// Runs this model's forward passes (hidden states and logits) on `gpu`, activations staying there.
    /// Throws when the weights cannot be copied (nothing changes then).
    public func moveForwardPass(to gpu: CUDABackend) throws {
        deviceForward = try DeviceLlama(model: self, gpu: gpu)
    }

    /// Stops using the GPU after a failure, saying so once.
    func leaveDevice(after error: Error) {
        deviceForward = nil
        CUDABackend.abandon("the GPU forward pass stopped (\(error))")
    }
}
