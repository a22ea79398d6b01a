import CKernels
import Foundation
import LQTensor

/// The summed token loss of a batch and how many target tokens it had; a distillation also sums
/// its KL divergence to the teacher over the rows it distils.
public struct TokenLoss: Sendable, Equatable {
    public var sum: Double
    public var targets: Int
    public var divergence = 0.0, divergenceRows = 0

    public init(sum: Double = 0, targets: Int = 0) {
        self.sum = sum
        self.targets = targets
    }

    public var mean: Double { targets > 0 ? sum / Double(targets) : .nan }
    /// KL(teacher ‖ model) per distilled position, in nats.
    public var meanDivergence: Double { divergenceRows > 0 ? divergence / Double(divergenceRows) : .nan }

    public static func += (a: inout TokenLoss, b: TokenLoss) {
        a.sum += b.sum
        a.targets += b.targets
        a.divergence += b.divergence
        a.divergenceRows += b.divergenceRows
    }
}

/// Labels at or below this value take no part in the loss (transformers' ignore_index is −100).
public let ignoreLabel = -100

/// What training minimises, computed from the LM head's logits a chunk of rows at a time (so
/// the [N, vocab] logits never exist at once).
public protocol Objective {
    /// The rows of the flattened [batch·length] positions whose logits take part, in order.
    var rows: [Int] { get }
    /// Adds the loss of `logits` [k, vocab] of rows[chunk] to `loss` (one running sum over the
    /// chunks, so the total does not depend on the chunking); with `gradient`, the logits are
    /// replaced by ∂loss/∂logits (as the loss is normalised for the optimizer).
    func evaluate(_ logits: Tensor, chunk: Range<Int>, gradient: Bool, into loss: inout TokenLoss)
}

/// The causal-LM cross-entropy as transformers computes it: position t's logits predict labels[t+1];
/// labels at ignoreLabel or below take no part. The gradient is of Σ token losses / normalizer,
/// which keeps the loss exact under gradient accumulation (the effective batch's target count).
public struct MaskedCrossEntropy: Objective {
    public let rows: [Int]
    public let targets: [Int]
    public let normalizer: Int

    public init(labels: [[Int]], length: Int, vocabularySize vocab: Int, normalizer: Int = 1) {
        var rows: [Int] = [], targets: [Int] = []
        for (b, seq) in labels.enumerated() {
            precondition(seq.count == length, "labels must match the tokens' shape")
            for t in 0..<length {
                let label = t + 1 < length ? seq[t + 1] : ignoreLabel
                guard label > ignoreLabel else { continue }
                precondition(label < vocab, "label \(label) outside the vocabulary")
                rows.append(b * length + t)
                targets.append(label)
            }
        }
        self.rows = rows
        self.targets = targets
        self.normalizer = normalizer
    }

    public func evaluate(_ logits: Tensor, chunk: Range<Int>, gradient: Bool, into loss: inout TokenLoss) {
        let vocab = logits.shape[1]
        let scale = Float(1 / Double(max(normalizer, 1)))
        for (k, label) in targets[chunk].enumerated() {
            let row = logits.pointer + k * vocab
            let lse = lq_logsumexp(row, Int64(vocab))
            loss.sum += lse - Double(row[label])
            loss.targets += 1
            if gradient {  // ∂/∂logits = (softmax − onehot) / normalizer
                lq_softmax(row, Int64(vocab))
                for j in 0..<vocab { row[j] *= scale }
                row[label] -= scale
            }
        }
    }
}

extension LlamaModel {
    /// The causal-LM loss of `tokens` against `labels` (aligned with the tokens, as transformers takes
    /// them: position t's logits predict labels[t+1]), and its gradients delivered to `gradients`
    /// (each adapter's ∂(Σ token losses / normalizer)/∂A and ∂B, and any weight gradient it asks for).
    public func accumulateGradients(tokens: [[Int]], labels: [[Int]], normalizer: Int, into gradients: (any GradientSink)?,
                                    checkpointing: Bool = false, rng: inout SeededGenerator) -> TokenLoss {
        precondition(labels.count == tokens.count, "labels must match the tokens' shape")
        let objective = MaskedCrossEntropy(labels: labels, length: tokens.first?.count ?? 0, vocabularySize: config.vocabSize,
                                           normalizer: normalizer)
        return accumulateGradients(tokens: tokens, objective: objective, into: gradients, checkpointing: checkpointing, rng: &rng)
    }

    /// Forward and backward of `objective` on `tokens` (batch sequences of equal length).
    /// With `checkpointing`, blocks keep only their input and recompute the rest during backward.
    public func accumulateGradients(tokens: [[Int]], objective: some Objective, into gradients: (any GradientSink)?,
                                    checkpointing: Bool = false, rng: inout SeededGenerator) -> TokenLoss {
        let batch = tokens.count, length = tokens.first?.count ?? 0
        precondition(tokens.allSatisfy { $0.count == length }, "sequences in a batch must have equal length")
        rope.ensure(positions: length)
        var x = embedRows(tokens)
        var tapes: [BlockTape?] = []
        var inputs: [(Tensor, [UInt64])] = []
        for l in layers.indices {
            let rngState = rng.state
            let (out, tape) = blockForward(l, x, batch: batch, length: length, rng: &rng)
            if checkpointing {
                inputs.append((x, rngState))
                tapes.append(nil)
            } else {
                tapes.append(tape)
            }
            x = out
        }
        let (hidden, rstd) = rmsNormKeepingScale(x, norm)
        let dHidden = Tensor(zeros: hidden.shape)
        let loss = headLoss(hidden, objective: objective, dHidden: dHidden, gradients: gradients, rng: &rng)
        gradients?.backwardWillBegin(loss: loss)
        var dx = Tensor(zeros: x.shape)
        rmsNormBackward(dHidden, x: x, weight: norm, rstd: rstd, into: dx)
        for l in layers.indices.reversed() {
            let tape: BlockTape
            if let saved = tapes[l] {
                tape = saved
            } else {
                var replay = SeededGenerator(seed: 0)
                replay.state = inputs[l].1  // the same dropout masks as the first time
                tape = blockForward(l, inputs[l].0, batch: batch, length: length, rng: &replay).1
            }
            tapes[l] = nil  // free each block's activations as soon as it is done
            dx = blockBackward(l, dx, tape: tape, batch: batch, length: length, gradients: gradients)
        }
        return loss
    }

    /// How many numbers `accumulateGradients` draws from `rng` for `batch` sequences of `length`
    /// tokens: each projection's adapter dropout, in the blocks' order (the LM head is never an
    /// adapter and draws none). A rank of a data-parallel job jumps over other ranks' micro-batches by it.
    public func dropoutDraws(batch: Int, length: Int) -> UInt64 {
        UInt64(layers.reduce(0) { sum, layer in sum + layer.linears.reduce(0) { $0 + $1.1.trainingDraws(rows: batch * length) } })
    }

    /// The loss alone (no adapter dropout, no gradients): for validation.
    public func loss(tokens: [[Int]], labels: [[Int]]) -> TokenLoss {
        loss(tokens: tokens, objective: MaskedCrossEntropy(labels: labels, length: tokens.first?.count ?? 0, vocabularySize: config.vocabSize))
    }

    /// Any objective's value alone (no adapter dropout, no gradients).
    public func loss(tokens: [[Int]], objective: some Objective) -> TokenLoss {
        let hidden = hiddenStates(tokens)
        var rng = SeededGenerator(seed: 0)
        return headLoss(hidden, objective: objective, dHidden: nil, gradients: nil, rng: &rng)
    }

    /// Embedding rows of the sequences one after another ([batch·length] for equal lengths).
    func embedRows(_ tokens: [[Int]]) -> Tensor {
        let h = config.hiddenSize
        let x = Tensor(zeros: [tokens.reduce(0) { $0 + $1.count }, h])
        for (row, id) in tokens.joined().enumerated() {
            precondition(id >= 0 && id < config.vocabSize, "token id \(id) outside the vocabulary")
            embed.weightRow(id, into: x.pointer + row * h)
        }
        return x
    }

    /// The objective through the LM head in row chunks, so the [N, vocab] logits never exist at once.
    /// Only the objective's rows go through the head: with prompts masked from the loss, that skips
    /// the largest matrix product for every prompt token. With `dHidden`, also writes ∂loss/∂hidden.
    func headLoss(_ hidden: Tensor, objective: some Objective, dHidden: Tensor?, gradients: (any GradientSink)?,
                  rng: inout SeededGenerator) -> TokenLoss {
        let head = lmHead ?? embed
        let n = hidden.shape[0], h = hidden.shape[1], vocab = config.vocabSize
        let rows = objective.rows
        let contiguous = rows.count == n
        let chunk = max(1, min(rows.count, (1 << 24) / vocab))  // 64 MiB of logits: rows enough for sgemm to run at speed
        var loss = TokenLoss()
        var r0 = 0
        while r0 < rows.count {
            let r1 = min(rows.count, r0 + chunk)
            let x: Tensor
            if contiguous {
                x = hidden.rows(r0..<r1)
            } else {
                x = Tensor(zeros: [r1 - r0, h])
                for (k, i) in rows[r0..<r1].enumerated() { (x.pointer + k * h).update(from: hidden.pointer + i * h, count: h) }
            }
            let (logits, tape) = dHidden == nil ? (head(x), LinearTape(input: x)) : head.trainingForward(x, rng: &rng)
            objective.evaluate(logits, chunk: r0..<r1, gradient: dHidden != nil, into: &loss)
            if let dHidden {
                if contiguous {
                    head.backward(logits, tape: tape, dx: dHidden.rows(r0..<r1), gradients: gradients)
                } else {
                    let dx = Tensor(zeros: x.shape)
                    head.backward(logits, tape: tape, dx: dx, gradients: gradients)
                    for (k, i) in rows[r0..<r1].enumerated() { (dHidden.pointer + i * h).update(from: dx.pointer + k * h, count: h) }
                }
            }
            r0 = r1
        }
        return loss
    }

    /// Block l's forward with its tape: the same llamaBlock inference runs, recording.
    func blockForward(_ l: Int, _ x0: Tensor, batch: Int, length: Int, rng: inout SeededGenerator) -> (Tensor, BlockTape) {
        let kernels = HostBlockKernels(model: self, layer: l, layout: .uniform(batch: batch, length: length), recordingWith: rng)
        let out = llamaBlock(kernels, x0)
        rng = kernels.rng
        return (out, kernels.tape())
    }

    /// Backward of one projection: the input gradient and any adapter gradients, then its weight's
    /// gradient when the sink wants it (last, so that a sink may update the weight at once: the
    /// input gradient has already used it, and no other layer reads it in this pass).
    func linearBackward(_ l: Int, _ p: Projection, _ dy: Tensor, tape: BlockTape, dx: Tensor, gradients: (any GradientSink)?) {
        let t = tape.linear(p), site = LinearSite.projection(layer: l, p)
        layers[l][p].backward(dy, tape: t, dx: dx, gradients: gradients)
        if let gradients, gradients.wantsWeightGradient(at: site) {
            gradients.receiveWeightGradient(matmul(dy, transposeA: true, t.input), at: site)  // ∂L/∂W = dyᵀ·x
        }
    }

    /// dL/dx2 of block l's output → dL/dx0 of its input; parameter gradients go to `gradients` on the way.
    func blockBackward(_ l: Int, _ dx2: Tensor, tape: BlockTape, batch: Int, length: Int, gradients: (any GradientSink)?) -> Tensor {
        let c = config, layer = layers[l]
        // MLP: x2 = x1 + down(silu(gate(n2)) · up(n2)).
        let dm = Tensor(zeros: tape.g.shape)
        linearBackward(l, .down, dx2, tape: tape, dx: dm, gradients: gradients)
        let (dg, du) = swigluBackward(dm, g: tape.g, u: tape.u)
        let dn2 = Tensor(zeros: tape.x1.shape)
        linearBackward(l, .gate, dg, tape: tape, dx: dn2, gradients: gradients)
        linearBackward(l, .up, du, tape: tape, dx: dn2, gradients: gradients)
        let dx1 = dx2.copy()
        rmsNormBackward(dn2, x: tape.x1, weight: layer.postNorm, rstd: tape.rstd2, into: dx1)
        // Attention: x1 = x0 + o(attend(rope(q(n1)), rope(k(n1)), v(n1))).
        let dAttended = Tensor(zeros: tape.q.shape)
        linearBackward(l, .o, dx1, tape: tape, dx: dAttended, gradients: gradients)
        let (dq, dk, dv) = causalAttentionBackward(dAttended, q: tape.q, k: tape.k, v: tape.v, batch: batch, length: length)
        rope.apply(dq, heads: c.headCount, headDim: c.headDim, batch: batch, length: length, start: 0, inverse: true)
        rope.apply(dk, heads: c.kvHeadCount, headDim: c.headDim, batch: batch, length: length, start: 0, inverse: true)
        let dn1 = Tensor(zeros: tape.x0.shape)
        linearBackward(l, .q, dq, tape: tape, dx: dn1, gradients: gradients)
        linearBackward(l, .k, dk, tape: tape, dx: dn1, gradients: gradients)
        linearBackward(l, .v, dv, tape: tape, dx: dn1, gradients: gradients)
        let dx0 = dx1.copy()
        rmsNormBackward(dn1, x: tape.x0, weight: layer.inputNorm, rstd: tape.rstd1, into: dx0)
        return dx0
    }

    /// Backward of causalAttention (start 0), by the same query blocks: recomputes each block's
    /// probabilities P, then dV += Pᵀ·dO, dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ)), dQ = s·dS·K, dK += s·dSᵀ·Q.
    /// Jobs are (sequence, kv head) so the heads sharing a key/value head add into it on one thread.
    func causalAttentionBackward(_ dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, batch: Int, length: Int) -> (Tensor, Tensor, Tensor) {
        let hd = config.headDim, nkv = config.kvHeadCount, group = config.headCount / nkv
        let scale = 1 / Float(hd).squareRoot()
        let qb = attentionQueryBlock
        let dq = Tensor(zeros: q.shape), dk = Tensor(zeros: k.shape), dv = Tensor(zeros: v.shape)
        Parallel.forEach(batch * nkv) { range in
            let pBuffer = Tensor(uninitialized: [min(length, qb) * length]), dpBuffer = Tensor(uninitialized: [min(length, qb) * length])
            for job in range {
                let b = job / nkv, kvHead = job % nkv
                let kvCols = (kvHead * hd)..<((kvHead + 1) * hd)
                for head in (kvHead * group)..<((kvHead + 1) * group) {
                    let cols = (head * hd)..<((head + 1) * hd)
                    for r0 in stride(from: 0, to: length, by: qb) {
                        let r1 = min(length, r0 + qb), visible = r1, n = r1 - r0
                        let rows = (b * length + r0)..<(b * length + r1), seen = (b * length)..<(b * length + visible)
                        let qm = q.block(rows: rows, cols: cols), dom = dOut.block(rows: rows, cols: cols)
                        let km = k.block(rows: seen, cols: kvCols), vm = v.block(rows: seen, cols: kvCols)
                        let p = MatrixRef(base: pBuffer.pointer, rows: n, cols: visible, ld: visible)
                        let dp = MatrixRef(base: dpBuffer.pointer, rows: n, cols: visible, ld: visible)
                        attentionProbabilities(qm, km, into: p, firstPosition: r0, scale: scale)
                        gemm(dom, vm, transposeB: true, into: dp)
                        gemm(p, transposeA: true, dom, into: dv.block(rows: seen, cols: kvCols), beta: 1)
                        for i in 0..<n {
                            let pr = p.base + i * visible, dr = dp.base + i * visible
                            var dot: Float = 0
                            for j in 0...(r0 + i) { dot += pr[j] * dr[j] }
                            for j in 0..<visible { dr[j] = pr[j] * (dr[j] - dot) }
                        }
                        gemm(dp, km, into: dq.block(rows: rows, cols: cols), alpha: scale)
                        gemm(dp, transposeA: true, qm, into: dk.block(rows: seen, cols: kvCols), alpha: scale, beta: 1)
                    }
                }
            }
        }
        return (dq, dk, dv)
    }

    func rmsNormKeepingScale(_ x: Tensor, _ weight: Tensor) -> (Tensor, [Float]) {
        var rstd = [Float](repeating: 0, count: x.shape[0])
        let out = rstd.withUnsafeMutableBufferPointer { rmsNorm(x, weight, eps: config.rmsNormEps, rstd: $0.baseAddress) }
        return (out, rstd)
    }
}

/// y = w ⊙ x·r with r = 1/√(mean(x²)+ε): dx += r·(w ⊙ dy) − x·r³/h · Σ(w ⊙ dy ⊙ x), row by row.
func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, rstd: [Float], into dx: Tensor) {
    let n = x.shape[0], h = x.shape[1]
    Parallel.forEach(n, minChunk: 64) { range in
        for i in range {
            let xr = x.pointer + i * h, dyr = dy.pointer + i * h, dxr = dx.pointer + i * h
            let r = rstd[i]
            var dot: Float = 0
            for j in 0..<h { dot += weight.pointer[j] * dyr[j] * xr[j] }
            let c = dot * r * r * r / Float(h)
            for j in 0..<h { dxr[j] += r * weight.pointer[j] * dyr[j] - xr[j] * c }
        }
    }
}

/// Backward of m = silu(g)·u (the SIMD kernel beside its scalar reference in CKernels).
func swigluBackward(_ dm: Tensor, g: Tensor, u: Tensor) -> (Tensor, Tensor) {
    let dg = Tensor(uninitialized: g.shape), du = Tensor(uninitialized: u.shape)  // written in full
    Parallel.forEach(g.count, minChunk: 1 << 15) { r in
        let o = r.lowerBound
        lq_silu_mul_backward(dm.pointer + o, g.pointer + o, u.pointer + o, dg.pointer + o, du.pointer + o, Int64(r.count))
    }
    return (dg, du)
}

func sum(_ a: Tensor, _ b: Tensor) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    for i in 0..<a.count { out.pointer[i] = a.pointer[i] + b.pointer[i] }
    return out
}
