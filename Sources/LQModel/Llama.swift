import CBLAS
import CKernels
import Foundation
import LQFormats
import LQQuant
import LQTensor

/// One decoder block's weights: two norms and the seven projections, each any linear operator
/// (dense, 16-bit, quantized, or one of those wrapped in an adapter).
public final class LlamaLayer: @unchecked Sendable {
    public let inputNorm: Tensor, postNorm: Tensor
    private var projections: [any LinearOperator]  // in Projection.allCases order

    public init(inputNorm: Tensor, postNorm: Tensor, q: any LinearOperator, k: any LinearOperator, v: any LinearOperator,
                o: any LinearOperator, gate: any LinearOperator, up: any LinearOperator, down: any LinearOperator) {
        self.inputNorm = inputNorm
        self.postNorm = postNorm
        projections = [q, k, v, o, gate, up, down]
    }

    /// A projection by name; setting one replaces it (attaching or removing an adapter).
    public subscript(_ p: Projection) -> any LinearOperator {
        get { projections[Self.index[p]!] }
        set {
            precondition(newValue.outFeatures == self[p].outFeatures && newValue.inFeatures == self[p].inFeatures,
                         "a replacement for \(p.module) must keep its shape")
            projections[Self.index[p]!] = newValue
        }
    }

    private static let index = Dictionary(uniqueKeysWithValues: Projection.allCases.enumerated().map { ($1, $0) })

    /// The seven projections in block order.
    public var linears: [(Projection, any LinearOperator)] { Projection.allCases.map { ($0, self[$0]) } }
}

/// Keys and values of earlier positions, per sequence and layer, for incremental decoding.
public final class KVCache {
    public let capacity: Int
    public private(set) var length = 0
    /// The tokens the GPU has cached per sequence: what the CPU recomputes if the GPU fails mid-way.
    private(set) var history: [[Int]] = []
    /// Keys and values on the GPU when the model's forward pass runs there.
    var device: DeviceKVCache?
    private let config: LlamaConfig
    private let batch: Int
    private var host: (keys: [[Tensor]], values: [[Tensor]])?

    public init(config: LlamaConfig, batch: Int, capacity: Int) {
        self.capacity = capacity
        self.config = config
        self.batch = batch
    }

    /// Keys and values on the host, [batch][layer] → [capacity, kvHeads·headDim], allocated on first
    /// use: a cache that only the GPU fills never holds them.
    func hostTensors() -> (keys: [[Tensor]], values: [[Tensor]]) {
        if let host { return host }
        let width = config.kvHeadCount * config.headDim
        func make() -> [[Tensor]] { (0..<batch).map { _ in (0..<config.layerCount).map { _ in Tensor(zeros: [capacity, width]) } } }
        let made = (keys: make(), values: make())
        host = made
        return made
    }

    func advance(by n: Int) { length += n }

    /// After sequences continued from different positions: the cache covers the longest of them.
    func extend(to positions: Int) { length = max(length, positions) }

    func record(_ tokens: [[Int]]) {
        if history.isEmpty { history = tokens } else { for b in tokens.indices { history[b] += tokens[b] } }
    }

    /// An independent copy holding the same positions on the host (a shared prompt scored with
    /// several continuations). A cache filled on the GPU cannot be forked.
    public func fork() -> KVCache { gather(Array(0..<batch), capacity: capacity) }

    /// An independent cache of `capacity` positions whose sequence i holds what sequence
    /// sources[i] of this one holds: each context copied once for every continuation that will
    /// continue it (the choices of a batch of items). On the host only, as fork().
    public func gather(_ sources: [Int], capacity: Int) -> KVCache {
        precondition(device == nil, "a KV cache on the GPU cannot be forked")
        precondition(capacity >= length && sources.allSatisfy { (0..<batch).contains($0) }, "a gathered cache holds the positions of existing sequences")
        let copy = KVCache(config: config, batch: sources.count, capacity: capacity)
        copy.length = length
        copy.history = history.isEmpty ? [] : sources.map { history[$0] }
        if let host {
            let width = config.kvHeadCount * config.headDim
            let made = copy.hostTensors()
            for (i, b) in sources.enumerated() {
                for l in 0..<config.layerCount {
                    made.keys[i][l].pointer.update(from: host.keys[b][l].pointer, count: length * width)
                    made.values[i][l].pointer.update(from: host.values[b][l].pointer, count: length * width)
                }
            }
        }
        return copy
    }

    /// Keeps the first `n` positions, so the next pass continues after them: a sequence that
    /// shares a prefix with the cached one reuses it, on the CPU or the GPU (positions past `n`
    /// are overwritten, never read).
    public func truncate(to n: Int) {
        precondition(n >= 0 && n <= length, "a KV cache can keep at most the \(length) positions it holds")
        length = n
        history = history.map { Array($0.prefix(n)) }
    }

    /// Forgets every position (the next pass starts at 0), keeping the history.
    func rewind() {
        length = 0
        device = nil
    }
}

/// A Llama-family causal language model computing exactly what transformers' LlamaForCausalLM
/// computes, in fp32: RMSNorm, rotate-half RoPE (with linear or llama3 scaling), grouped-query
/// causal attention, SwiGLU MLP, tied or separate LM head. Weights stay as stored: the embedding
/// table and the LM head as BF16/F16 views of the mapping when stored so (widened as they compute),
/// projections dense fp32 (views of the mapping for F32 files, converted once from BF16/F16) or
/// quantized.
public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    /// The token embeddings [vocab, hidden], also the LM head when tied.
    public let embed: any LinearOperator
    public let layers: [LlamaLayer]
    public let norm: Tensor
    /// nil when tied to the embeddings.
    public let lmHead: (any LinearOperator)?
    let rope: RotaryTable
    /// Where hidden states and logits are computed when on the GPU (moveForwardPass(to:)).
    public internal(set) var deviceForward: DeviceLlama?
    /// The directories the weights came from (the model's, then any adapter's): where a
    /// non-finite result is traced to its tensor.
    public internal(set) var sources: [String] = []

    public init(config: LlamaConfig, embed: any LinearOperator, layers: [LlamaLayer], norm: Tensor, lmHead: (any LinearOperator)?) {
        self.config = config
        self.embed = embed
        self.layers = layers
        self.norm = norm
        self.lmHead = lmHead
        rope = RotaryTable(config: config)
    }

    /// How a 16-bit checkpoint's projections are held.
    public enum ProjectionStorage: Sendable {
        /// Widened to fp32 once at load: the fastest batched products (eval, training), twice the memory.
        case widened
        /// BF16/F16 as stored: decoding reads half the bytes through the fused 16-bit GEMV, and
        /// batched products (a prompt) widen panels per call; for generation.
        case asStored
    }

    /// Loads a model directory: config.json plus dense or quantized safetensors.
    public convenience init(directory: String, projections: ProjectionStorage = .widened) throws {
        let config = try LlamaConfig(directory: directory)
        let weights = try CheckpointWeights(directory: directory)
        let h = config.hiddenSize
        func projection(_ p: Projection, in layer: Int) throws -> any LinearOperator {
            let (out, inFeatures) = config.shape(of: p)
            return try weights.linear(LinearSite.projection(layer: layer, p).module, out: out, in: inFeatures,
                                      bias: config.qkvBias && [.q, .k, .v].contains(p), keepHalf: projections == .asStored)
        }
        var layers: [LlamaLayer] = []
        for i in 0..<config.layerCount {
            let p = "model.layers.\(i)."
            layers.append(LlamaLayer(
                inputNorm: try weights.tensor(p + "input_layernorm.weight", [h]),
                postNorm: try weights.tensor(p + "post_attention_layernorm.weight", [h]),
                q: try projection(.q, in: i), k: try projection(.k, in: i), v: try projection(.v, in: i), o: try projection(.o, in: i),
                gate: try projection(.gate, in: i), up: try projection(.up, in: i), down: try projection(.down, in: i)))
        }
        let tied = config.tieWordEmbeddings || !weights.contains("lm_head.weight")
        self.init(config: config, embed: try weights.linear("model.embed_tokens", out: config.vocabSize, in: h, keepHalf: true), layers: layers,
                  norm: try weights.tensor("model.norm.weight", [h]),
                  lmHead: tied ? nil : try weights.linear("lm_head", out: config.vocabSize, in: h, keepHalf: true))
        sources = [directory]
    }

    /// The final normalised hidden states [batch·length, hidden] of `tokens` (equal-length
    /// sequences), continuing after `cache.length` earlier positions when a cache is given (and
    /// appending to it). An observer sees every projection's input on the way (it makes the pass
    /// run on the CPU); CausalLM's hiddenStates(_:cache:) is this without one.
    public func hiddenStates(_ tokens: [[Int]], cache: KVCache? = nil, observer: (any ForwardObserver)?) -> Tensor {
        if let observer { return hostHiddenStates(tokens, cache: cache, observer: observer) }
        if let device = deviceForward {
            do {
                let hidden = try device.hiddenStates(tokens, cache: cache)
                cache?.advance(by: tokens.first?.count ?? 0)
                cache?.record(tokens)
                return hidden
            } catch {
                leaveDevice(after: error)
                if let cache, cache.length > 0 { return recomputeOnCPU(tokens, cache: cache) }
                cache?.rewind()
            }
        }
        return hostHiddenStates(tokens, cache: cache)
    }

    /// After the GPU failed mid-way through a cached sequence: fills the CPU cache from the history
    /// and returns the new tokens' hidden states.
    private func recomputeOnCPU(_ tokens: [[Int]], cache: KVCache) -> Tensor {
        let earlier = cache.history, length = tokens.first?.count ?? 0
        cache.rewind()
        let all = zip(earlier, tokens).map { $0 + $1 }
        let total = all.first?.count ?? 0
        let hidden = hostHiddenStates(all, cache: cache)
        let h = config.hiddenSize, out = Tensor(uninitialized: [tokens.count * length, h])
        for b in tokens.indices {
            (out.pointer + b * length * h).update(from: hidden.pointer + (b * total + total - length) * h, count: length * h)
        }
        return out
    }

    /// `starts` nil: equal-length sequences, all after the cache's positions, as [batch·length]
    /// rows; given: sequences of any lengths, each after its own number of cached positions, packed.
    func hostHiddenStates(_ tokens: [[Int]], cache: KVCache?, starts: [Int]? = nil, observer: (any ForwardObserver)? = nil) -> Tensor {
        let lengths = tokens.map(\.count)
        precondition(starts != nil || Set(lengths).count <= 1, "sequences in a batch must have equal length")
        let layout = PassLayout(lengths: lengths, starts: starts ?? Array(repeating: cache?.length ?? 0, count: tokens.count))
        var x = embedRows(tokens)
        for l in layers.indices {
            x = llamaBlock(HostBlockKernels(model: self, layer: l, layout: layout, cache: cache, observer: observer), x)
        }
        cache?.extend(to: layout.positions)
        return rmsNorm(x, norm, eps: config.rmsNormEps)
    }

    /// Hidden states → logits through the LM head (or the tied embeddings).
    public func logits(_ hidden: Tensor) -> Tensor {
        if let device = deviceForward {
            do { return try device.logits(hidden) } catch { leaveDevice(after: error) }
        }
        return (lmHead ?? embed)(hidden)
    }
}

extension LlamaModel {
    /// Which CPU products of the NormalFloat projections (under any adapter) take int8 activations;
    /// the other layers, the adapters and the GPU keep fp32; `outlierRatio`: the int8 path's τ (lq_q8.h,
    /// "residual"). Set before the model runs.
    public func useActivations(_ path: ActivationPath, outlierRatio: Float = ActivationPath.outlierRatio) {
        for layer in layers {
            for (_, linear) in layer.linears {
                guard let weight = (Self.withoutAdapter(linear) as? QuantizedLinear)?.weight else { continue }
                weight.activations = path
                weight.outlierRatio = outlierRatio
            }
        }
    }
}

/// Query rows per attention block: the keys after a block's last position are masked for every
/// row in it and are never multiplied, which skips close to half of a causal pass.
let attentionQueryBlock = 64

extension LlamaModel {
    /// softmax(Q·Kᵀ/√d + causal mask)·V for every head: q [rows, heads·headDim] laid out by
    /// `layout`; keys and values per sequence [≥ starts[b]+lengths[b], kvHeads·headDim]; row t of
    /// sequence b is position starts[b] + t.
    func causalAttention(q: Tensor, keys: [Tensor], values: [Tensor], layout: PassLayout) -> Tensor {
        let hd = config.headDim, nh = config.headCount, group = nh / config.kvHeadCount
        let out = Tensor(zeros: [layout.rows, nh * hd])
        let scale = 1 / Float(hd).squareRoot()
        let qb = attentionQueryBlock, jobs = layout.batch * nh
        let scoreCount = min(layout.lengths.max() ?? 0, qb) * layout.positions
        // Decoding (a single query row) is too little work per head to hand to other threads.
        Parallel.forEach(jobs, minChunk: layout.rows == layout.batch ? jobs : 1) { range in
            let scores = Tensor(uninitialized: [scoreCount])
            for job in range {
                let b = job / nh, head = job % nh, kvHead = head / group
                let start = layout.starts[b], length = layout.lengths[b], first = layout.offsets[b]
                let cols = (head * hd)..<((head + 1) * hd), kvCols = (kvHead * hd)..<((kvHead + 1) * hd)
                for r0 in stride(from: 0, to: length, by: qb) {
                    let r1 = min(length, r0 + qb), visible = start + r1
                    let rows = (first + r0)..<(first + r1)
                    let p = MatrixRef(base: scores.pointer, rows: r1 - r0, cols: visible, ld: visible)
                    attentionProbabilities(q.block(rows: rows, cols: cols), keys[b].block(rows: 0..<visible, cols: kvCols),
                                           into: p, firstPosition: start + r0, scale: scale)
                    gemm(p, values[b].block(rows: 0..<visible, cols: kvCols), into: out.block(rows: rows, cols: cols))
                }
            }
        }
        return out
    }

    /// p ← softmax(scale · q·kᵀ) under the causal (and sliding-window) mask; query row t is at
    /// position firstPosition + t, key j at position j.
    func attentionProbabilities(_ qm: MatrixRef, _ km: MatrixRef, into p: MatrixRef, firstPosition: Int, scale: Float) {
        gemm(qm, km, transposeB: true, into: p, alpha: scale)
        for t in 0..<qm.rows {
            let last = firstPosition + t  // causal: attend to positions ≤ last
            let first = config.slidingWindow.map { max(0, last - $0 + 1) } ?? 0
            softmaxRow(p.base + t * p.ld, valid: first...last, width: p.cols)
        }
    }
}

/// Softmax over row[valid] in float32 (max-subtracted); everything outside `valid` becomes 0.
@inline(__always)
func softmaxRow(_ row: UnsafeMutablePointer<Float>, valid: ClosedRange<Int>, width: Int) {
    if valid.lowerBound > 0 { row.update(repeating: 0, count: valid.lowerBound) }
    lq_softmax(row + valid.lowerBound, Int64(valid.count))
    if valid.upperBound + 1 < width { (row + valid.upperBound + 1).update(repeating: 0, count: width - valid.upperBound - 1) }
}

/// RMSNorm as transformers computes it in fp32: w · (x · rsqrt(mean(x²) + eps)).
/// With `rstd`, each row's 1/rms is also written there (the backward pass needs it).
func rmsNorm(_ x: Tensor, _ weight: Tensor, eps: Float, rstd: UnsafeMutablePointer<Float>? = nil) -> Tensor {
    let n = x.shape[0], h = x.shape[1]
    let out = Tensor(uninitialized: x.shape)
    Parallel.forEach(n, minChunk: 64) { range in
        for i in range {
            let src = x.pointer + i * h, dst = out.pointer + i * h
            var ss: Float = 0
            for j in 0..<h { ss += src[j] * src[j] }
            let r = 1 / (ss / Float(h) + eps).squareRoot()
            rstd?[i] = r
            for j in 0..<h { dst[j] = weight.pointer[j] * (src[j] * r) }
        }
    }
    return out
}

func add(_ x: Tensor, _ y: Tensor) {
    for i in 0..<x.count { x.pointer[i] += y.pointer[i] }
}

/// g ← silu(g) · u.
func swiglu(_ g: Tensor, _ u: Tensor) {
    let n = g.count
    Parallel.forEach(n, minChunk: 1 << 15) { r in
        lq_silu_mul(g.pointer + r.lowerBound, u.pointer + r.lowerBound, Int64(r.count))
    }
}
