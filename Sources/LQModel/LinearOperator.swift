import LQQuant
import LQTensor

/// y = x·Wᵀ (+ bias) for a weight W [out, in] in whatever storage, with what a backward pass needs.
/// Every linear layer of a model is one of these, so a wrapper (LoRALinear; a quantizer in the
/// loop) composes with any storage, and a new storage is one more conforming type.
public protocol LinearOperator: AnyObject, Sendable {
    var outFeatures: Int { get }
    var inFeatures: Int { get }
    var bias: Tensor? { get }
    /// x [n, in] → x·Wᵀ + bias [n, out].
    func callAsFunction(_ x: Tensor) -> Tensor
    /// dx [n, in] += dy [n, out] · W.
    func accumulateInputGradient(_ dy: Tensor, into dx: Tensor)
    /// Row `i` of W as fp32 (an embedding lookup when this is the embedding table).
    func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>)
    /// The training forward: what backward will need is kept in the tape. Frozen storage keeps its input.
    func trainingForward(_ x: Tensor, rng: inout SeededGenerator) -> (Tensor, LinearTape)
    /// How many numbers `trainingForward` draws from its generator for `rows` rows of input.
    func trainingDraws(rows: Int) -> Int
    /// Given dL/dy [n, out]: adds dL/dx into `dx` [n, in] and any trainable parameters' gradients into `gradients`.
    func backward(_ dy: Tensor, tape: LinearTape, dx: Tensor, gradients: (any GradientSink)?)
}

/// What a linear layer's backward pass needs from its forward: the input, and for adapter dropout
/// the per-element factor (0 or 1/(1−p)) applied to the adapter's copy of it.
public struct LinearTape {
    public let input: Tensor
    public let dropout: Tensor?

    public init(input: Tensor, dropout: Tensor? = nil) {
        self.input = input
        self.dropout = dropout
    }
}

extension LinearOperator {
    public func trainingDraws(rows: Int) -> Int { 0 }

    public func trainingForward(_ x: Tensor, rng: inout SeededGenerator) -> (Tensor, LinearTape) {
        (self(x), LinearTape(input: x))
    }

    public func backward(_ dy: Tensor, tape: LinearTape, dx: Tensor, gradients: (any GradientSink)?) {
        accumulateInputGradient(dy, into: dx)
    }

    /// W as dense fp32 [out, in]: a full copy, for fusing and exports one matrix at a time.
    public func denseWeight() -> Tensor {
        let w = Tensor(uninitialized: [outFeatures, inFeatures])
        for r in 0..<outFeatures { weightRow(r, into: w.pointer + r * inFeatures) }
        return w
    }

    /// y [n, out] += bias, row by row.
    func addBias(_ y: Tensor) {
        guard let bias else { return }
        let n = y.shape[0], out = y.shape[1]
        for i in 0..<n { for j in 0..<out { y.pointer[i * out + j] += bias.pointer[j] } }
    }
}

/// A dense fp32 weight (a view of an F32 checkpoint's mapping, or widened once at load).
public final class DenseLinear: LinearOperator, @unchecked Sendable {
    public let weight: Tensor  // [out, in]
    public let bias: Tensor?

    public init(weight: Tensor, bias: Tensor? = nil) {
        precondition(weight.rank == 2, "a linear weight is a matrix")
        self.weight = weight
        self.bias = bias
    }

    public var outFeatures: Int { weight.shape[0] }
    public var inFeatures: Int { weight.shape[1] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y: Tensor
        if x.shape[0] == 1 {  // decoding: sgemv reads W once, sgemm with M = 1 does not
            y = Tensor(zeros: [1, outFeatures])
            gemv(weight.matrix, x: x.pointer, y: y.pointer)
        } else {
            y = matmul(x, weight, transposeB: true)
        }
        addBias(y)
        return y
    }

    public func accumulateInputGradient(_ dy: Tensor, into dx: Tensor) {
        gemm(dy.matrix, weight.matrix, into: dx.matrix, beta: 1)
    }

    public func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(from: weight.pointer + i * inFeatures, count: inFeatures)
    }
}

/// A weight kept in a compact form (16-bit as stored, NormalFloat, uniform integers) that multiplies,
/// multiplies transposed and widens rows with its own kernels: what a storage brings to become a
/// linear layer (`StoredLinear`).
public protocol WeightStorage: Sendable {
    var rows: Int { get }
    var cols: Int { get }
    /// x [n, cols] → x·Wᵀ [n, rows].
    func product(_ x: Tensor) -> Tensor
    /// dx [n, cols] += dy [n, rows] · W.
    func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor)
    /// Rows `range` of W as fp32 into `out`, row-major.
    func widen(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>)
}

/// A linear layer over a compact weight storage, plus an optional bias.
public final class StoredLinear<Storage: WeightStorage>: LinearOperator, @unchecked Sendable {
    public let weight: Storage
    public let bias: Tensor?

    public init(weight: Storage, bias: Tensor? = nil) {
        self.weight = weight
        self.bias = bias
    }

    public var outFeatures: Int { weight.rows }
    public var inFeatures: Int { weight.cols }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = weight.product(x)
        addBias(y)
        return y
    }

    public func accumulateInputGradient(_ dy: Tensor, into dx: Tensor) { weight.accumulateTransposedProduct(dy, into: dx) }

    public func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>) { weight.widen(rows: i..<(i + 1), into: out) }
}

/// A BF16/F16 weight as stored, widened as it computes (the embeddings and LM head).
public typealias HalfLinear = StoredLinear<HalfMatrix>
/// A quantized weight (any NormalFloat configuration), computed with its kernels (and the GPU's when active).
public typealias QuantizedLinear = StoredLinear<QuantizedMatrix>
/// A uniform-integer weight (GPTQ or round-to-nearest: codes, per-group scales and zero points),
/// computed with its kernels (and the GPU's when active).
public typealias UniformLinear = StoredLinear<UniformQuantization>
/// A weight Q-GaLore trains: 8- or 4-bit group codes that its optimizer rewrites after every step.
public typealias GroupQuantizedLinear = StoredLinear<GroupQuantizedMatrix>

extension HalfMatrix: WeightStorage {
    public func product(_ x: Tensor) -> Tensor { matmul(x) }
}

extension QuantizedMatrix: WeightStorage {
    public func product(_ x: Tensor) -> Tensor { matmul(x) }
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor) { accumulateTransposedProduct(dy, into: dx, gpu: CUDABackend.active) }
    public func widen(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) { dequantize(rows: range, into: out) }
}

extension UniformQuantization: WeightStorage {
    public func product(_ x: Tensor) -> Tensor { matmul(x) }
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor) { accumulateTransposedProduct(dy, into: dx, gpu: CUDABackend.active) }
    public func widen(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) { dequantize(rows: range, into: out) }
}

extension GroupQuantizedMatrix: WeightStorage {
    public func product(_ x: Tensor) -> Tensor { matmul(x) }
    public func widen(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        dequantize((range.lowerBound * cols)..<(range.upperBound * cols), into: out)
    }
}
