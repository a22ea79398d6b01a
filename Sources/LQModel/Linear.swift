import LQQuant
import LQTensor

/// A LoRA adapter on a linear layer: y += scale · B(A x), A [r, in], B [out, r].
public struct LoRA: @unchecked Sendable {
    public var a: Tensor
    public var b: Tensor
    public var scale: Float

    public init(a: Tensor, b: Tensor, scale: Float) {
        self.a = a
        self.b = b
        self.scale = scale
    }

    public var rank: Int { a.shape[0] }
}

/// One linear layer with four faces: dense fp32, 16-bit as stored (bf16/f16, widened as it
/// computes), quantized (any NormalFloat configuration, computed with its kernels), and any of
/// those plus a LoRA adapter.
public final class Linear: @unchecked Sendable {
    public enum Base {
        case dense(Tensor)  // [out, in]
        case half(HalfMatrix)
        case quantized(QuantizedMatrix)
    }

    public let base: Base
    public let bias: Tensor?
    public var lora: LoRA?
    /// Gradients of the adapter's A and B while training (accumulated; zeroed by the optimizer).
    public var loraGrad: LoRA?
    /// Dropout probability on the adapter's input while training (PEFT's lora_dropout).
    public var loraDropout: Float = 0
    /// When set, each backward pass adds the elementwise square of ∂L/∂W [out, in] here: the
    /// empirical diagonal Fisher of the frozen weight, for the data-aware LQ-LoRA.
    public var squaredWeightGradients: Tensor?

    public init(base: Base, bias: Tensor? = nil, lora: LoRA? = nil) {
        self.base = base
        self.bias = bias
        self.lora = lora
    }

    public var outFeatures: Int {
        switch base {
        case let .dense(w): return w.shape[0]
        case let .half(w): return w.rows
        case let .quantized(q): return q.rows
        }
    }

    public var inFeatures: Int {
        switch base {
        case let .dense(w): return w.shape[1]
        case let .half(w): return w.cols
        case let .quantized(q): return q.cols
        }
    }

    /// x [n, in] → [n, out].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = baseProduct(x)
        if let lora {
            if x.shape[0] == 1 {  // decoding: two small matrix-vector products, not sgemm with M = 1
                let ax = Tensor(uninitialized: [1, lora.rank])
                gemv(lora.a.matrix, x: x.pointer, y: ax.pointer)
                gemv(lora.b.matrix, x: ax.pointer, y: y.pointer, alpha: lora.scale, beta: 1)
            } else {
                let ax = matmul(x, lora.a, transposeB: true)  // [n, r]
                gemm(ax.matrix, lora.b.matrix, transposeB: true, into: y.matrix, alpha: lora.scale, beta: 1)
            }
        }
        return y
    }

    /// x·Wᵀ + bias, without the adapter.
    func baseProduct(_ x: Tensor) -> Tensor {
        let y: Tensor
        switch base {
        case let .dense(w) where x.shape[0] == 1:  // decoding: sgemv reads W once, sgemm with M = 1 does not
            y = Tensor(zeros: [1, w.shape[0]])
            gemv(w.matrix, x: x.pointer, y: y.pointer)
        case let .dense(w): y = matmul(x, w, transposeB: true)
        case let .half(w): y = w.matmul(x)
        case let .quantized(q): y = q.matmul(x)
        }
        if let bias {
            let n = y.shape[0], out = y.shape[1]
            for i in 0..<n { for j in 0..<out { y.pointer[i * out + j] += bias.pointer[j] } }
        }
        return y
    }

    /// Row `i` of the weight [out, in] as fp32 (an embedding lookup when this is the embedding table).
    public func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        switch base {
        case let .dense(w): out.update(from: w.pointer + i * w.shape[1], count: w.shape[1])
        case let .half(w): w.widen(rows: i..<(i + 1), into: out)
        case let .quantized(q): q.dequantize(rows: i..<(i + 1), into: out)
        }
    }
}
