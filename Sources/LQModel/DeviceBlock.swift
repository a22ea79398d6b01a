import CKernels
import LQQuant
import LQTensor

/// The GPU's decoder-block operations: each writes into the pass's device scratch buffers
/// (activations stay on the device between layers), so llamaBlock's data flow runs unchanged on
/// device kernels. Every buffer a block reuses is free again by then: `normed` holds n1 until
/// q, k, v are made and n2 after; `projected` holds o's output until the residual, then down's.
final class DeviceBlockKernels: DecoderKernels {
    typealias Activation = DeviceFloats
    typealias Failure = any Error

    let model: DeviceLlama
    let layer: DeviceLlama.Layer
    let layerIndex: Int
    let s: DeviceLlama.Scratch
    let rows: Int, batch: Int, length: Int, start: Int
    let cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    let cache: (host: KVCache, device: DeviceKVCache)?

    init(model: DeviceLlama, layer l: Int, scratch: DeviceLlama.Scratch, rows: Int, batch: Int, length: Int, start: Int,
         cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, cache: (KVCache, DeviceKVCache)?) {
        self.model = model
        layer = model.layers[l]
        layerIndex = l
        s = scratch
        self.rows = rows
        self.batch = batch
        self.length = length
        self.start = start
        self.cos = cos
        self.sin = sin
        self.cache = cache.map { (host: $0.0, device: $0.1) }
    }

    func norm(_ x: DeviceFloats, _ which: BlockNorm) throws -> DeviceFloats {
        let c = model.config, weight = which == .input ? layer.inputNorm : layer.postNorm
        try model.gpu.rmsNorm(x.pointer, weight: weight.pointer, rows: rows, width: c.hiddenSize, eps: c.rmsNormEps, into: s.normed.pointer)
        return s.normed
    }

    func linear(_ p: Projection, _ x: DeviceFloats) throws -> DeviceFloats {
        let out: DeviceFloats
        switch p {
        case .q: out = s.q
        case .k: out = s.k
        case .v: out = s.v
        case .o, .down: out = s.projected
        case .gate: out = s.gate
        case .up: out = s.up
        }
        try model.apply(layer[p], x, rows, into: out)
        return out
    }

    func rotate(queries q: DeviceFloats, keys k: DeviceFloats) throws {
        let c = model.config
        try model.gpu.rope(q.pointer, cos: cos, sin: sin, batch: batch, length: length, start: start, heads: c.headCount, headDim: c.headDim)
        try model.gpu.rope(k.pointer, cos: cos, sin: sin, batch: batch, length: length, start: start, heads: c.kvHeadCount, headDim: c.headDim)
    }

    func attend(queries q: DeviceFloats, keys k: DeviceFloats, values v: DeviceFloats) throws -> DeviceFloats {
        let c = model.config, hd = c.headDim, kvd = c.kvHeadCount * hd
        var shape = lq_attention_shape(batch: Int64(batch), length: Int64(length), start: Int64(start), capacity: Int64(length),
                                       heads: Int64(c.headCount), kv_heads: Int64(c.kvHeadCount), head_dim: Int64(hd),
                                       window: Int64(c.slidingWindow ?? 0), scale: 1 / Float(hd).squareRoot())
        var keys = k.pointer, values = v.pointer
        if let (host, device) = cache {
            precondition(start + length <= host.capacity, "KV cache of \(host.capacity) positions is full")
            let ck = device.keys[layerIndex], cv = device.values[layerIndex]
            for b in 0..<batch {
                let at = (b * host.capacity + start) * kvd, from = b * length * kvd
                try model.gpu.copy(k.pointer + from, to: ck.pointer + at, count: length * kvd)
                try model.gpu.copy(v.pointer + from, to: cv.pointer + at, count: length * kvd)
            }
            keys = ck.pointer
            values = cv.pointer
            shape.capacity = Int64(host.capacity)
        }
        try model.gpu.attention(q: q.pointer, keys: keys, values: values, shape: shape, into: s.attention.pointer)
        return s.attention
    }

    func residual(_ x: DeviceFloats, plus y: DeviceFloats) throws -> DeviceFloats {
        try model.gpu.add(x.pointer, y.pointer, count: rows * model.config.hiddenSize)
        return x
    }

    func gatedActivation(gate g: DeviceFloats, up u: DeviceFloats) throws -> DeviceFloats {
        try model.gpu.siluMul(g.pointer, u.pointer, count: rows * model.config.intermediateSize)
        return g
    }
}
