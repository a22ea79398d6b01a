import CKernels
import LQTensor

/// A LoRA adapter around any linear operator, as PEFT computes it:
/// y = base(x) + scale · B·A·dropout(x), A [r, in], B [out, r]. The base stays frozen; training
/// finds A's and B's gradient buffers through the GradientSink it is given, so the model holds
/// no training state.
public final class LoRALinear: LinearOperator, @unchecked Sendable {
    public let base: any LinearOperator
    public private(set) var a: Tensor
    public private(set) var b: Tensor
    public let scale: Float
    /// Dropout probability on the adapter's input while training (PEFT's lora_dropout).
    public var dropout: Float = 0
    /// IEEE-half copies of A and B that decoding reads instead of the fp32 ones (`keepHalfCopiesForDecoding`).
    public private(set) var decodingCopies: (a: HalfMatrix, b: HalfMatrix)?

    public init(base: any LinearOperator, a: Tensor, b: Tensor, scale: Float) {
        Self.checkShapes(a: a, b: b, base: base)
        self.base = base
        self.a = a
        self.b = b
        self.scale = scale
    }

    /// A [r, in] and B [out, r] for a base weight [out, in].
    static func checkShapes(a: Tensor, b: Tensor, base: any LinearOperator) {
        precondition(a.shape == [a.shape[0], base.inFeatures] && b.shape == [base.outFeatures, a.shape[0]],
                     "LoRA shapes A \(a.shape), B \(b.shape) do not fit a [\(base.outFeatures), \(base.inFeatures)] weight")
    }

    public var rank: Int { a.shape[0] }
    public var outFeatures: Int { base.outFeatures }
    public var inFeatures: Int { base.inFeatures }
    public var bias: Tensor? { base.bias }

    /// Moves A and B into other storage of the same shapes and values (a training module's parameter slab).
    public func rebind(a newA: Tensor, b newB: Tensor) {
        precondition(newA.shape == a.shape && newB.shape == b.shape, "rebinding LoRA matrices needs the same shapes")
        a = newA
        b = newB
    }

    /// Decoding (one row at a time) reads IEEE-half copies of A and B from now on: half the bytes of
    /// fp32, for a rank-64 adapter on a small model as many bytes as its quantized base. Each value
    /// is within 2^-11 of its fp32 one, relatively; products widen them exactly. Batched products
    /// and training keep the fp32 matrices. An adapter holding a value past half's range (65,504)
    /// keeps decoding in fp32.
    public func keepHalfCopiesForDecoding() {
        func half(_ t: Tensor) -> HalfMatrix? {
            guard (0..<t.count).allSatisfy({ abs(t.pointer[$0]) <= 65_504 }) else { return nil }
            let storage = TensorStorage(byteCount: t.count * 2, zeroed: false)
            lq_f32_to_f16(t.pointer, storage.base.assumingMemoryBound(to: UInt16.self), t.count)
            return HalfMatrix(kind: .f16, rows: t.shape[0], cols: t.shape[1], storage: storage)
        }
        if let a16 = half(a), let b16 = half(b) { decodingCopies = (a16, b16) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = base(x)
        if x.shape[0] == 1 {  // decoding: two small matrix-vector products, not sgemm with M = 1
            let ax = Tensor(uninitialized: [1, rank])
            if let (a16, b16) = decodingCopies {
                let bax = Tensor(uninitialized: [1, outFeatures])
                a16.gemv(x.pointer, ax.pointer)
                b16.gemv(ax.pointer, bax.pointer)
                for j in 0..<outFeatures { y.pointer[j] += scale * bax.pointer[j] }
            } else {
                gemv(a.matrix, x: x.pointer, y: ax.pointer)
                gemv(b.matrix, x: ax.pointer, y: y.pointer, alpha: scale, beta: 1)
            }
        } else {
            let ax = matmul(x, a, transposeB: true)  // [n, r]
            gemm(ax.matrix, b.matrix, transposeB: true, into: y.matrix, alpha: scale, beta: 1)
        }
        return y
    }

    public func accumulateInputGradient(_ dy: Tensor, into dx: Tensor) {
        base.accumulateInputGradient(dy, into: dx)
        let dax = Tensor(zeros: [dy.shape[0], rank])
        gemm(dy.matrix, b.matrix, into: dax.matrix, alpha: scale)
        gemm(dax.matrix, a.matrix, into: dx.matrix, beta: 1)
    }

    public func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        base.weightRow(i, into: out)
        let n = inFeatures, r = rank
        for k in 0..<r {
            let s = scale * b.pointer[i * r + k]
            for j in 0..<n { out[j] += s * a.pointer[k * n + j] }
        }
    }

    /// W + scale·B·A as one dense layer (merging the adapter into its base).
    public func fused() -> DenseLinear {
        let w = base.denseWeight()
        gemm(b.matrix, a.matrix, into: w.matrix, alpha: scale, beta: 1)
        return DenseLinear(weight: w, bias: base.bias)
    }

    /// One uniform per input element when there is dropout.
    public func trainingDraws(rows: Int) -> Int { dropout > 0 ? rows * inFeatures : 0 }

    public func trainingForward(_ x: Tensor, rng: inout SeededGenerator) -> (Tensor, LinearTape) {
        let y = base(x)
        var mask: Tensor?
        var adapterInput = x
        if dropout > 0 {
            let keep = 1 - dropout, factor = 1 / keep
            let m = Tensor(zeros: x.shape), dropped = Tensor(zeros: x.shape)
            for i in 0..<x.count {
                let u = Float(rng.next() >> 40) * 0x1p-24  // uniform in [0, 1)
                m.pointer[i] = u < keep ? factor : 0
                dropped.pointer[i] = x.pointer[i] * m.pointer[i]
            }
            mask = m
            adapterInput = dropped
        }
        let ax = matmul(adapterInput, a, transposeB: true)
        gemm(ax.matrix, b.matrix, transposeB: true, into: y.matrix, alpha: scale, beta: 1)
        return (y, LinearTape(input: x, dropout: mask))
    }

    public func backward(_ dy: Tensor, tape: LinearTape, dx: Tensor, gradients: (any GradientSink)?) {
        base.backward(dy, tape: LinearTape(input: tape.input), dx: dx, gradients: gradients)
        var input = tape.input
        if let mask = tape.dropout {
            input = Tensor(zeros: tape.input.shape)
            for i in 0..<input.count { input.pointer[i] = tape.input.pointer[i] * mask.pointer[i] }
        }
        let ax = matmul(input, a, transposeB: true)  // [n, r], recomputed: cheaper than keeping it
        let dax = Tensor(zeros: ax.shape)
        gemm(dy.matrix, b.matrix, into: dax.matrix, alpha: scale)  // s·dy·B
        if let grad = gradients?.adapterGradients(self) {
            gemm(dy.matrix, transposeA: true, ax.matrix, into: grad.b.matrix, alpha: scale, beta: 1)  // dB += s·dyᵀ·ax
            gemm(dax.matrix, transposeA: true, input.matrix, into: grad.a.matrix, beta: 1)  // dA += daxᵀ·x
        }
        if let mask = tape.dropout {
            let dInput = matmul(dax, a)
            for i in 0..<dx.count { dx.pointer[i] += dInput.pointer[i] * mask.pointer[i] }
        } else {
            gemm(dax.matrix, a.matrix, into: dx.matrix, beta: 1)
        }
    }
}

/// Where a backward pass delivers the gradients it computes beyond the input gradient: the
/// training module's parameters (an adapter's A and B), or a frozen weight's own gradient for
/// the estimators that want it (the diagonal Fisher; full-rank finetuning).
public protocol GradientSink: AnyObject {
    /// The buffers an adapter's ∂L/∂A and ∂L/∂B accumulate into; nil leaves it untrained.
    func adapterGradients(_ adapter: LoRALinear) -> (a: Tensor, b: Tensor)?
    /// Whether ∂L/∂W [out, in] of the weight at `site` is wanted.
    func wantsWeightGradient(at site: LinearSite) -> Bool
    /// Receives ∂L/∂W of the weight at `site` (a fresh tensor the sink may keep), after the layer's
    /// input gradient: a sink may update the weight at once.
    func receiveWeightGradient(_ gradient: Tensor, at site: LinearSite)
    /// Called once the objective's loss is known, before any gradient of the blocks arrives (a sink
    /// that updates weights in the backward pass leaves them alone when the loss is not finite).
    func backwardWillBegin(loss: TokenLoss)
    /// The buffers a trainable layer's parameter gradients accumulate into, in its parameters'
    /// order; nil leaves it untrained.
    func gradients(of layer: any TrainableLinear) -> [Tensor]?
}

extension GradientSink {
    public func adapterGradients(_ adapter: LoRALinear) -> (a: Tensor, b: Tensor)? { nil }
    public func wantsWeightGradient(at site: LinearSite) -> Bool { false }
    public func receiveWeightGradient(_ gradient: Tensor, at site: LinearSite) {}
    public func backwardWillBegin(loss: TokenLoss) {}
    public func gradients(of layer: any TrainableLinear) -> [Tensor]? { nil }
}
