import LQQuant
import LQTensor

/// What a linear layer's backward pass needs from its forward: the input, and for adapter
/// dropout the per-element factor (0 or 1/(1−p)) applied to the adapter's copy of it.
struct LinearTape {
    let x: Tensor
    let dropout: Tensor?
}

extension Linear {
    /// The training forward: y = x·Wᵀ + bias + scale·B·A·dropout(x), remembering what backward needs.
    func trainingForward(_ x: Tensor, rng: inout SeededGenerator) -> (Tensor, LinearTape) {
        let y = baseProduct(x)
        guard let lora else { return (y, LinearTape(x: x, dropout: nil)) }
        var mask: Tensor?
        var adapterInput = x
        if loraDropout > 0 {
            let keep = 1 - loraDropout, factor = 1 / keep
            let m = Tensor(zeros: x.shape), dropped = Tensor(zeros: x.shape)
            for i in 0..<x.count {
                let u = Float(rng.next() >> 40) * 0x1p-24  // uniform in [0, 1)
                m.pointer[i] = u < keep ? factor : 0
                dropped.pointer[i] = x.pointer[i] * m.pointer[i]
            }
            mask = m
            adapterInput = dropped
        }
        let ax = matmul(adapterInput, lora.a, transposeB: true)
        gemm(ax.matrix, lora.b.matrix, transposeB: true, into: y.matrix, alpha: lora.scale, beta: 1)
        return (y, LinearTape(x: x, dropout: mask))
    }

    /// Given dL/dy [n, out]: adds dL/dx into `dx` [n, in] (through the frozen weight and the adapter)
    /// and the adapter's gradients into `loraGrad`.
    func backward(_ dy: Tensor, tape: LinearTape, dx: Tensor) {
        if let fisher = squaredWeightGradients {
            let g = matmul(dy, transposeA: true, tape.x)  // ∂L/∂W = dyᵀ·x
            Parallel.forEach(g.count, minChunk: 1 << 16) { r in
                for i in r { fisher.pointer[i] += g.pointer[i] * g.pointer[i] }
            }
        }
        switch base {
        case let .dense(w): gemm(dy.matrix, w.matrix, into: dx.matrix, beta: 1)
        case let .half(w): w.accumulateTransposedProduct(dy, into: dx)
        case let .quantized(q): q.accumulateTransposedProduct(dy, into: dx)
        }
        guard let lora else { return }
        let grad = loraGrad ?? LoRA(a: Tensor(zeros: lora.a.shape), b: Tensor(zeros: lora.b.shape), scale: lora.scale)
        loraGrad = grad
        var input = tape.x
        if let mask = tape.dropout {
            input = Tensor(zeros: tape.x.shape)
            for i in 0..<input.count { input.pointer[i] = tape.x.pointer[i] * mask.pointer[i] }
        }
        let ax = matmul(input, lora.a, transposeB: true)  // [n, r], recomputed: cheaper than keeping it
        gemm(dy.matrix, transposeA: true, ax.matrix, into: grad.b.matrix, alpha: lora.scale, beta: 1)  // dB += s·dyᵀ·ax
        let dax = Tensor(zeros: ax.shape)
        gemm(dy.matrix, lora.b.matrix, into: dax.matrix, alpha: lora.scale)  // s·dy·B
        gemm(dax.matrix, transposeA: true, input.matrix, into: grad.a.matrix, beta: 1)  // dA += daxᵀ·x
        if let mask = tape.dropout {
            let dInput = matmul(dax, lora.a)
            for i in 0..<dx.count { dx.pointer[i] += dInput.pointer[i] * mask.pointer[i] }
        } else {
            gemm(dax.matrix, lora.a.matrix, into: dx.matrix, beta: 1)
        }
    }
}
