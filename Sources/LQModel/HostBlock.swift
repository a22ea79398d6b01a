import LQTensor

/// Sees what a forward pass computes on the way, without changing it: each projection's input
/// before it is multiplied (GPTQ's Hessians, activation statistics, calibration).
public protocol ForwardObserver: AnyObject {
    /// x [n, in] is about to be multiplied by the weight at `site`.
    func observeInput(_ x: Tensor, of site: LinearSite)
}

/// One decoder block's forward activations, as its backward pass reads them.
/// Shapes: N = batch·length rows; h hidden; qd = heads·headDim; kvd = kvHeads·headDim; f intermediate.
struct BlockTape {
    let x0: Tensor            // [N, h] block input
    let rstd1: [Float]        // 1/rms of each row of x0
    let q: Tensor, k: Tensor, v: Tensor  // [N, qd], [N, kvd], [N, kvd]; q and k after RoPE
    let x1: Tensor            // [N, h] after the attention residual
    let rstd2: [Float]
    let g: Tensor, u: Tensor  // [N, f] gate and up projections, before SwiGLU
    let linears: [Projection: LinearTape]

    func linear(_ p: Projection) -> LinearTape { linears[p]! }
}

/// The CPU's decoder-block operations for one block of one pass. Inference works in place; with a
/// tape (training), every value the backward reads is kept and projections run their training
/// forward (adapter dropout drawn from `rng`).
final class HostBlockKernels: DecoderKernels {
    typealias Activation = Tensor
    typealias Failure = Never

    let model: LlamaModel
    let layerIndex: Int
    let layer: LlamaLayer
    let layout: PassLayout
    let cache: KVCache?
    let observer: (any ForwardObserver)?
    /// Non-nil when a backward pass will follow: the tape being filled.
    private var recording: TapeRecorder?
    var rng: SeededGenerator
    /// A calibration pass that only needs to show the observer this projection's input: every
    /// operation after it returns at once (the pass's output is then meaningless and unused).
    var stopAfterObserving: Projection?
    private var stopped = false

    init(model: LlamaModel, layer l: Int, layout: PassLayout, cache: KVCache? = nil,
         observer: (any ForwardObserver)? = nil, recordingWith rng: SeededGenerator? = nil) {
        self.model = model
        layerIndex = l
        layer = model.layers[l]
        self.layout = layout
        self.cache = cache
        self.observer = observer
        recording = rng.map { _ in TapeRecorder() }
        self.rng = rng ?? SeededGenerator(seed: 0)
        model.rope.ensure(positions: layout.positions)
    }

    /// The tape of a recorded pass, once llamaBlock has run.
    func tape() -> BlockTape {
        guard let r = recording, let x0 = r.x0, let x1 = r.x1, let q = r.q, let k = r.k, let v = r.v, let g = r.g, let u = r.u
        else { preconditionFailure("the block did not record a whole tape") }
        return BlockTape(x0: x0, rstd1: r.rstd1, q: q, k: k, v: v, x1: x1, rstd2: r.rstd2, g: g, u: u, linears: r.linears)
    }

    func norm(_ x: Tensor, _ which: BlockNorm) -> Tensor {
        if stopped { return x }
        let weight = which == .input ? layer.inputNorm : layer.postNorm
        guard let r = recording else { return rmsNorm(x, weight, eps: model.config.rmsNormEps) }
        let (out, rstd) = model.rmsNormKeepingScale(x, weight)
        switch which {
        case .input: r.x0 = x; r.rstd1 = rstd
        case .post: r.x1 = x; r.rstd2 = rstd
        }
        return out
    }

    func linear(_ p: Projection, _ x: Tensor) -> Tensor {
        if stopped { return x }
        observer?.observeInput(x, of: .projection(layer: layerIndex, p))
        if p == stopAfterObserving {
            stopped = true
            return x
        }
        guard let r = recording else { return layer[p](x) }
        let (y, tape) = layer[p].trainingForward(x, rng: &rng)
        r.linears[p] = tape
        return y
    }

    func rotate(queries q: Tensor, keys k: Tensor) {
        if stopped { return }
        let c = model.config
        model.rope.apply(q, heads: c.headCount, headDim: c.headDim, layout: layout)
        model.rope.apply(k, heads: c.kvHeadCount, headDim: c.headDim, layout: layout)
    }

    func attend(queries q: Tensor, keys k: Tensor, values v: Tensor) -> Tensor {
        if stopped { return q }
        if let r = recording { r.q = q; r.k = k; r.v = v }
        // Keys and values for every position of each sequence: the cache's, or this call's.
        var keys: [Tensor] = [], values: [Tensor] = []
        for b in 0..<layout.batch {
            let kb = k.rows(layout.rows(of: b)), vb = v.rows(layout.rows(of: b)), start = layout.starts[b]
            if let cache {
                precondition(start + layout.lengths[b] <= cache.capacity, "KV cache of \(cache.capacity) positions is full")
                let stored = cache.hostTensors()
                let ck = stored.keys[b][layerIndex], cv = stored.values[b][layerIndex]
                (ck.pointer + start * kb.shape[1]).update(from: kb.pointer, count: kb.count)
                (cv.pointer + start * vb.shape[1]).update(from: vb.pointer, count: vb.count)
                keys.append(ck)
                values.append(cv)
            } else {
                keys.append(kb)
                values.append(vb)
            }
        }
        return model.causalAttention(q: q, keys: keys, values: values, layout: layout)
    }

    func residual(_ x: Tensor, plus y: Tensor) -> Tensor {
        if stopped { return x }
        if recording != nil { return sum(x, y) }  // the tape keeps x
        add(x, y)
        return x
    }

    func gatedActivation(gate g: Tensor, up u: Tensor) -> Tensor {
        if stopped { return g }
        guard let r = recording else {
            swiglu(g, u)
            return g
        }
        r.g = g
        r.u = u
        let m = g.copy()
        swiglu(m, u)
        return m
    }
}

/// A block's tape while it is being filled.
private final class TapeRecorder {
    var x0: Tensor?, x1: Tensor?
    var rstd1: [Float] = [], rstd2: [Float] = []
    var q: Tensor?, k: Tensor?, v: Tensor?
    var g: Tensor?, u: Tensor?
    var linears: [Projection: LinearTape] = [:]
}
