import LQQuant
import LQTensor

/// A linear layer with parameters of its own for training to reach (beyond LoRA's A and B, which
/// LoRALinear keeps): the gradient sink hands back one gradient buffer per parameter, in order.
public protocol TrainableLinear: LinearOperator {
    /// The trained tensors, in a fixed order, with the name suffix each is saved under.
    var parameters: [(suffix: String, value: Tensor)] { get }
    /// Moves the parameters into other storage of the same shapes and values (a parameter slab).
    func rebind(_ values: [Tensor])
}

/// L4Q: LoRA trained through the quantizer. The layer computes with
///   W' = W0 + scale·B·A,  v = (W' − b)/s,  W_q = s·round(clamp(v, Q_n, Q_p)) + b
/// with a learned step s and offset b per output row and group of input columns (LSQ+'s signed
/// range Q_n = −2^(bits−1), Q_p = 2^(bits−1) − 1; round half to even). Gradients are LSQ+'s
/// straight-through ones: ∂W_q/∂W' = 1 inside the range and 0 outside, ∂W_q/∂s = round(v) − v inside
/// and Q_n or Q_p outside, ∂W_q/∂b = 0 inside and 1 outside, with s and b's gradients scaled by LSQ's
/// g = 1/√(group·Q_p). The result is one quantized matrix (`quantization()`), no adapter left.
/// Memory: W0 stays in its stored form; W' and W_q exist for one layer at a time.
///
/// With `integerZeros` (a layout whose zero points are integers, l4q.format gptq: AutoGPTQ's v1
/// stores 1...maxq) the offset is b̃ = −s·z̃ through an integer zero point, so that the layer
/// computes exactly what that layout stores. The learned parameters are s and a real zero point z
/// (in codes, not b; saved as l4q_zero), and with maxq = 2^bits − 1, ŝ = fp16(s) (the stored scale):
///   u = W'/s,  z̃ = clamp(round(z), z_min, z_max),  k = clamp(round(u) + z̃, 0, maxq),
///   W_q = ŝ·(k − z̃)   (= ŝ·round(u) while round(u) + z̃ is in 0...maxq)
/// Codes are chosen with s as `quantize --method rtn` chooses them; the value uses ŝ, so the
/// model written is this one bit for bit. Gradients pass straight through round and ŝ (∂ŝ/∂s = 1,
/// ∂round(x)/∂x = 1, ∂z̃/∂z = 1 where z_min ≤ round(z) ≤ z_max and 0 where clamped), and s's
/// carries the b̃ = −s·z̃ dependency (v = u + z̃ gives round(v) − v = round(u) − u):
///   inside (0 ≤ round(u) + z̃ ≤ maxq): ∂W_q/∂W' = 1, ∂W_q/∂s = round(u) − u, ∂W_q/∂z = 0;
///   outside (k = Q, 0 or maxq):        ∂W_q/∂W' = 0, ∂W_q/∂s = Q − z̃,      ∂W_q/∂z = −s·∂z̃/∂z;
/// s and z's gradients scaled by the same g. They start from `quantize --method rtn --asym`'s
/// min–max of each group (UniformQuantizer: the range includes 0), z clamped into the layout's
/// range, so at B = 0 the layer is that round-to-nearest model.
public final class QuantizationAwareLoRA: TrainableLinear, @unchecked Sendable {
    public let base: any LinearOperator
    public private(set) var a: Tensor, b: Tensor
    /// [out, groups] each: s, and b (LSQ+) or, with `integerZeros`, the real zero point z.
    public private(set) var step: Tensor, offset: Tensor
    public let scale: Float
    public let bits: Int, groupSize: Int
    /// The zero points the target layout stores (nil: LSQ+'s real offset b, lqlora's fp16 zeros).
    public let integerZeros: ClosedRange<Int>?
    /// With `integerZeros`: the value uses fp16(s), the scale the layout stores (false: s itself,
    /// where a test needs W_q smooth in s).
    public let halfSteps: Bool
    /// False while warming up: the layer computes with W' unquantized (plain LoRA on W0).
    public var quantizing = true

    var qn: Float { -Float(1 << (bits - 1)) }
    var qp: Float { Float((1 << (bits - 1)) - 1) }
    var groups: Int { (inFeatures + groupSize - 1) / groupSize }
    var maxq: Float { Float((1 << bits) - 1) }

    /// s and b from each group's min–max of W0 (B = 0 makes this the round-to-nearest model):
    /// s = (max − min)/(2^bits − 1), b = min − s·Q_n; a constant group gets s = 1. With
    /// `integerZeros`: s and z as UniformQuantizer's asymmetric min–max gives them (RTN's), z clamped
    /// into `integerZeros`.
    public init(base: any LinearOperator, a: Tensor, b: Tensor, scale: Float, bits: Int, groupSize: Int,
                integerZeros: ClosedRange<Int>? = nil, halfSteps: Bool = true) {
        precondition([2, 3, 4, 8].contains(bits), "L4Q takes 2, 3, 4 or 8 bits (the uniform storage's widths)")
        precondition(integerZeros.map { $0.lowerBound >= 0 && $0.upperBound <= (1 << bits) - 1 } ?? true,
                     "integer zero points \(integerZeros!) outside the \(bits)-bit codes")
        LoRALinear.checkShapes(a: a, b: b, base: base)
        self.base = base
        self.a = a
        self.b = b
        self.scale = scale
        self.bits = bits
        self.groupSize = min(groupSize, base.inFeatures)
        self.integerZeros = integerZeros
        self.halfSteps = halfSteps
        let out = base.outFeatures, cols = base.inFeatures, g = (cols + self.groupSize - 1) / self.groupSize
        step = Tensor(zeros: [out, g])
        offset = Tensor(zeros: [out, g])
        let row = Tensor(uninitialized: [cols]), levels = Float((1 << bits) - 1), qn = -Float(1 << (bits - 1))
        let rtn = UniformQuantizer(bits: bits, symmetric: false)
        for i in 0..<out {
            base.weightRow(i, into: row.pointer)
            for k in 0..<g {
                let span = (k * self.groupSize)..<min(cols, (k + 1) * self.groupSize)
                var lo = Float.infinity, hi = -Float.infinity
                for j in span { lo = min(lo, row.pointer[j]); hi = max(hi, row.pointer[j]) }
                if let zeros = integerZeros {
                    let (s, z) = rtn.parameters(min: lo, max: hi)
                    step.pointer[i * g + k] = s
                    offset.pointer[i * g + k] = min(max(z, Float(zeros.lowerBound)), Float(zeros.upperBound))
                    continue
                }
                let s = hi > lo ? (hi - lo) / levels : 1
                step.pointer[i * g + k] = s
                offset.pointer[i * g + k] = lo - s * qn
            }
        }
    }

    /// With `integerZeros`, group `k` (of step and offset's [out, groups]): s, the value's ŝ, z̃,
    /// and ∂z̃/∂z (1 where round(z) is storable, 0 where clamped).
    @inline(__always)
    func integerGrid(_ k: Int) -> (s: Float, value: Float, zero: Float, zeroPasses: Float) {
        let zeros = integerZeros!, s = step.pointer[k], z = offset.pointer[k].rounded(.toNearestOrEven)
        let lo = Float(zeros.lowerBound), hi = Float(zeros.upperBound)
        return (s, halfSteps ? Float(Float16(s)) : s, min(max(z, lo), hi), z >= lo && z <= hi ? 1 : 0)
    }

    /// With `integerZeros`: W' quantized in place, one row (`out` [inFeatures], row `i`).
    @inline(__always)
    func quantizeIntegerRow(_ i: Int, _ out: UnsafeMutablePointer<Float>) {
        let g = groups, top = maxq
        for k in 0..<g {
            let (s, value, zero, _) = integerGrid(i * g + k)
            for j in (k * groupSize)..<min(inFeatures, (k + 1) * groupSize) {
                let code = min(max((out[j] / s).rounded(.toNearestOrEven) + zero, 0), top)
                out[j] = value * (code - zero)
            }
        }
    }

    public var rank: Int { a.shape[0] }
    public var outFeatures: Int { base.outFeatures }
    public var inFeatures: Int { base.inFeatures }
    public var bias: Tensor? { base.bias }

    public var parameters: [(suffix: String, value: Tensor)] {
        [("lora_A.weight", a), ("lora_B.weight", b), ("l4q_step", step), (integerZeros == nil ? "l4q_offset" : "l4q_zero", offset)]
    }

    public func rebind(_ values: [Tensor]) {
        precondition(values.map(\.shape) == [a.shape, b.shape, step.shape, offset.shape], "rebinding L4Q parameters needs the same shapes")
        (a, b, step, offset) = (values[0], values[1], values[2], values[3])
    }

    /// W' = W0 + scale·B·A [out, in].
    func adaptedWeight() -> Tensor {
        let w = base.denseWeight()
        gemm(b.matrix, a.matrix, into: w.matrix, alpha: scale, beta: 1)
        return w
    }

    /// The weight the layer computes with: W_q, or W' while warming up.
    public func effectiveWeight() -> Tensor {
        let w = adaptedWeight()
        guard quantizing else { return w }
        let cols = inFeatures, g = groups, lo = qn, hi = qp
        if integerZeros != nil {
            Parallel.forEach(outFeatures, minChunk: 16) { rows in
                for i in rows { self.quantizeIntegerRow(i, w.pointer + i * cols) }
            }
            return w
        }
        Parallel.forEach(outFeatures, minChunk: 16) { rows in
            for i in rows {
                for j in 0..<cols {
                    let s = self.step.pointer[i * g + j / self.groupSize], o = self.offset.pointer[i * g + j / self.groupSize]
                    let v = min(max((w.pointer[i * cols + j] - o) / s, lo), hi)
                    w.pointer[i * cols + j] = s * v.rounded(.toNearestOrEven) + o
                }
            }
        }
        return w
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = matmul(x, effectiveWeight(), transposeB: true)
        addBias(y)
        return y
    }

    public func accumulateInputGradient(_ dy: Tensor, into dx: Tensor) {
        gemm(dy.matrix, effectiveWeight().matrix, into: dx.matrix, beta: 1)
    }

    public func weightRow(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        base.weightRow(i, into: out)
        let n = inFeatures, r = rank, g = groups
        for k in 0..<r {
            let c = scale * b.pointer[i * r + k]
            for j in 0..<n { out[j] += c * a.pointer[k * n + j] }
        }
        guard quantizing else { return }
        if integerZeros != nil { return quantizeIntegerRow(i, out) }
        for j in 0..<n {
            let s = step.pointer[i * g + j / groupSize], o = offset.pointer[i * g + j / groupSize]
            out[j] = s * min(max((out[j] - o) / s, qn), qp).rounded(.toNearestOrEven) + o
        }
    }

    public func backward(_ dy: Tensor, tape: LinearTape, dx: Tensor, gradients: (any GradientSink)?) {
        let w = adaptedWeight(), cols = inFeatures, g = groups
        let gw = matmul(dy, transposeA: true, tape.input)  // ∂L/∂W_q = dyᵀ·x [out, in]
        let wq = Tensor(uninitialized: w.shape)
        let trained = gradients?.gradients(of: self)
        let lo = qn, hi = qp, gradScale = 1 / (Float(groupSize) * qp).squareRoot(), top = maxq
        Parallel.forEach(outFeatures, minChunk: 16) { rows in
            for i in rows {
                for k in 0..<g where self.integerZeros != nil {
                    // The integer-zero grid (see the type's comment): u = W'/s, k = clamp(round(u) + z̃, 0, maxq).
                    let (s, value, zero, zeroPasses) = self.quantizing ? self.integerGrid(i * g + k) : (1, 1, 0, 0)
                    var ds: Float = 0, clamped: Float = 0
                    for j in (k * self.groupSize)..<min(cols, (k + 1) * self.groupSize) {
                        let e = i * cols + j, grad = gw.pointer[e]
                        guard self.quantizing else { wq.pointer[e] = w.pointer[e]; continue }
                        let u = w.pointer[e] / s, r = u.rounded(.toNearestOrEven), code = r + zero
                        if code < 0 || code > top {
                            let q: Float = code < 0 ? 0 : top
                            wq.pointer[e] = value * (q - zero)
                            ds += grad * (q - zero)
                            clamped += grad
                            gw.pointer[e] = 0  // no gradient reaches W' from a clamped value
                        } else {
                            wq.pointer[e] = value * (code - zero)
                            ds += grad * (r - u)
                        }
                    }
                    if let trained, self.quantizing {
                        trained[2].pointer[i * g + k] += gradScale * ds
                        trained[3].pointer[i * g + k] += gradScale * (-s * clamped) * zeroPasses
                    }
                }
                for k in 0..<g where self.integerZeros == nil {
                    let s = self.step.pointer[i * g + k], o = self.offset.pointer[i * g + k]
                    var ds: Float = 0, db: Float = 0
                    for j in (k * self.groupSize)..<min(cols, (k + 1) * self.groupSize) {
                        let e = i * cols + j, grad = gw.pointer[e]
                        guard self.quantizing else { wq.pointer[e] = w.pointer[e]; continue }
                        let v = (w.pointer[e] - o) / s
                        if v < lo || v > hi {
                            let c = v < lo ? lo : hi
                            wq.pointer[e] = s * c + o
                            ds += grad * c
                            db += grad
                            gw.pointer[e] = 0  // no gradient reaches W' from a clamped value
                        } else {
                            let r = v.rounded(.toNearestOrEven)
                            wq.pointer[e] = s * r + o
                            ds += grad * (r - v)
                        }
                    }
                    if let trained, self.quantizing {
                        trained[2].pointer[i * g + k] += gradScale * ds
                        trained[3].pointer[i * g + k] += gradScale * db
                    }
                }
            }
        }
        gemm(dy.matrix, wq.matrix, into: dx.matrix, beta: 1)
        guard let trained else { return }
        // W' = W0 + scale·B·A: dB += scale·dW'·Aᵀ, dA += scale·Bᵀ·dW'.
        gemm(gw.matrix, a.matrix, transposeB: true, into: trained[1].matrix, alpha: scale, beta: 1)
        gemm(b.matrix, transposeA: true, gw.matrix, into: trained[0].matrix, alpha: scale, beta: 1)
    }

    /// The trained layer as integer codes in the uniform storage the GPTQ kernels run:
    /// code = round(clamp(v)) − Q_n ∈ [0, 2^bits − 1], W = scale·(code − zero) with scale = s and
    /// zero = −b/s − Q_n (a fractional zero point, which GPTQ's integer qzeros cannot hold).
    /// With `integerZeros`: code = k, scale = s, zero = z̃ (an integer the layout stores), so that
    /// with fp16 scales (`withHalfScales()`, as written) it is W_q exactly.
    public func quantization() -> UniformQuantization {
        let w = adaptedWeight(), rows = outFeatures, cols = inFeatures, g = groups
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: g * rows), zeros = [Float](repeating: 0, count: g * rows)
        for i in 0..<rows {
            for k in 0..<g where integerZeros != nil {
                let (s, _, zero, _) = integerGrid(i * g + k)
                (scales[k * rows + i], zeros[k * rows + i]) = (s, zero)
                for j in (k * groupSize)..<min(cols, (k + 1) * groupSize) {
                    codes[i * cols + j] = UInt8(min(max((w.pointer[i * cols + j] / s).rounded(.toNearestOrEven) + zero, 0), maxq))
                }
            }
            for k in 0..<g where integerZeros == nil {
                let s = step.pointer[i * g + k], o = offset.pointer[i * g + k]
                scales[k * rows + i] = s
                zeros[k * rows + i] = -o / s - qn
                for j in (k * groupSize)..<min(cols, (k + 1) * groupSize) {
                    let v = min(max((w.pointer[i * cols + j] - o) / s, qn), qp)
                    codes[i * cols + j] = UInt8(v.rounded(.toNearestOrEven) - qn)
                }
            }
        }
        return UniformQuantization(quantizer: UniformQuantizer(bits: bits, symmetric: false), rows: rows, cols: cols, groupSize: groupSize,
                                   codes: codes, scales: scales, zeros: zeros, groupIndex: (0..<cols).map { Int32($0 / groupSize) })
    }

    /// The trained layer as a checkpoint in `settings.layout` stores it: `quantization()` (lqlora's
    /// fp16 zero points), or (gptq) the nearest with integer zero points to that as lqlora would
    /// read it back, with what the rounding did: nothing (a change of 0) when the layer was trained
    /// with `integerZeros` equal to `settings.storableZeros`.
    public func quantization(storedAs settings: GPTQFormat.Settings) -> (UniformQuantization, ZeroPointRounding?) {
        switch settings.layout {
        case .lqlora: return (quantization(), nil)
        case .gptq: return quantization().withHalfScalesAndZeros().withIntegerZeros(in: settings.storableZeros)
        }
    }
}
