import LQTensor

/// GPTQ (Frantar et al.), as AutoGPTQ's `fasterquant` computes it: columns are quantized one at a
/// time in blocks of 128, each column's rounding error spread over the columns not yet quantized
/// through the upper Cholesky factor of the damped inverse Hessian, with the lazy batch update
/// between blocks. Groups take their quantizer parameters from the weight as updated when the
/// group starts (AutoGPTQ reads the matrix, not the block's working copy); act-order quantizes
/// columns by descending Hessian diagonal (ties by index). With static groups (AutoGPTQ's
/// `static_groups`) every group's quantizer comes from the original weight instead, in natural
/// column order before any column is quantized, and each column uses its natural group's.
public enum GPTQ {
    public struct Options: Sendable, Equatable {
        public var bits: Int
        /// Input columns per group; nil: one group per row.
        public var groupSize: Int?
        public var symmetric: Bool
        public var actOrder: Bool
        /// Damping as a fraction of the Hessian's mean diagonal (AutoGPTQ's damp_percent).
        public var damp: Float
        /// AutoGPTQ's static_groups: the groups' quantizers computed once from the original weight
        /// (dead inputs zeroed), in natural column order; g_idx stays c / group size under act-order.
        /// Without groups it changes nothing (as in AutoGPTQ).
        public var staticGroups: Bool
        public var blockSize: Int

        /// transformers' GPTQConfig defaults: 4 bits, groups of 128, symmetric, no act-order, damp 0.1,
        /// no static groups.
        public init(bits: Int = 4, groupSize: Int? = 128, symmetric: Bool = true, actOrder: Bool = false, damp: Float = 0.1,
                    staticGroups: Bool = false, blockSize: Int = 128) {
            self.bits = bits
            self.groupSize = groupSize
            self.symmetric = symmetric
            self.actOrder = actOrder
            self.damp = damp
            self.staticGroups = staticGroups
            self.blockSize = blockSize
        }
    }

    public struct Result: Sendable {
        public let quantization: UniformQuantization
        /// Σ (w − q)² / (2·U[i,i]²): GPTQ's own loss.
        public let loss: Double
        /// The damping that let the Cholesky factorisations succeed (the option, or more after retries).
        public let damp: Float
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case notPositiveDefinite(name: String, damp: Float)
        case nonFinite(name: String, index: Int)

        public var description: String {
            switch self {
            case let .nonFinite(name, index):
                return "\(name) holds a non-finite value at flat index \(index); quantization needs finite weights"
            case let .notPositiveDefinite(name, damp):
                return "\(name): the Hessian is not positive definite even with damp \(damp) (too little calibration data?)"
            }
        }
    }

    /// Quantizes w [rows, cols] with its Hessian h [cols, cols] (H = 2/N Σ x·xᵀ over the calibration
    /// inputs). When a Cholesky factorisation fails, damping grows by 0.01 until it succeeds, as
    /// GPTQModel does, and the result says what it took.
    public static func quantize(_ w: Tensor, hessian h: Tensor, options o: Options, name: String = "weight") throws -> Result {
        try requireFinite(w, name: name)
        let rows = w.shape[0], cols = w.shape[1]
        precondition(h.shape == [cols, cols], "\(name): Hessian \(h.shape) for a weight \(w.shape)")
        let quantizer = UniformQuantizer(bits: o.bits, symmetric: o.symmetric)
        let gs = o.groupSize ?? cols

        // Per-row parameters over the whole original row: the quantizer when not grouped.
        var initial = [(scale: Float, zero: Float)](repeating: (0, 0), count: rows)
        for r in 0..<rows {
            let row = w.pointer + r * cols
            var lo = row[0], hi = row[0]
            for c in 0..<cols { lo = min(lo, row[c]); hi = max(hi, row[c]) }
            initial[r] = quantizer.parameters(min: lo, max: hi)
        }

        // Columns-major working copy Wt [cols][rows]; dead inputs (H[d,d] = 0) get H[d,d] = 1 and W[:, d] = 0.
        let hw = h.copy()
        var dead: [Bool] = (0..<cols).map { hw[$0, $0] == 0 }
        for d in 0..<cols where dead[d] { hw[d, d] = 1 }
        let order: [Int] = o.actOrder
            ? (0..<cols).sorted { a, b in hw[a, a] != hw[b, b] ? hw[a, a] > hw[b, b] : a < b }
            : Array(0..<cols)
        let wt = Tensor(zeros: [cols, rows])
        let hp = Tensor(zeros: [cols, cols])
        for (k, c) in order.enumerated() {
            if !dead[c] { for r in 0..<rows { wt.pointer[k * rows + r] = w.pointer[r * cols + c] } }
            for (m, c2) in order.enumerated() { hp.pointer[k * cols + m] = hw[c, c2] }
        }
        dead = order.map { dead[$0] }

        // U = chol(chol_inverse(chol(H + damp·mean(diag H)·I)))ᵀ, upper; damping grows until it works.
        var meanDiagonal: Float = 0
        for i in 0..<cols { meanDiagonal += hp[i, i] }
        meanDiagonal /= Float(cols)
        var percent = o.damp
        var u: Tensor
        while true {
            let damped = hp.copy()
            let amount = percent * meanDiagonal
            for i in 0..<cols { damped[i, i] += amount }
            if let factor = try? cholesky(choleskyInverse(cholesky(damped)), upper: true) {
                u = factor
                break
            }
            percent += 0.01
            guard percent <= 1 else { throw Failure.notPositiveDefinite(name: name, damp: percent) }
        }

        var codes = [UInt8](repeating: 0, count: rows * cols)  // permuted column order until the end
        let groups = (cols + gs - 1) / gs
        var scales = [Float](repeating: 0, count: groups * rows), zeros = scales
        if o.groupSize == nil {
            for r in 0..<rows { scales[r] = initial[r].scale; zeros[r] = initial[r].zero }
        }
        let staticGroups = o.staticGroups && o.groupSize != nil
        if staticGroups {  // from the weight with dead inputs zeroed, natural order: Wt row k holds column order[k]
            var position = [Int](repeating: 0, count: cols)
            for (k, c) in order.enumerated() { position[c] = k }
            for g in 0..<groups {
                for r in 0..<rows {
                    let c0 = g * gs, c1 = min(cols, c0 + gs)
                    var lo = wt.pointer[position[c0] * rows + r], hi = lo
                    for c in c0..<c1 { let x = wt.pointer[position[c] * rows + r]; lo = min(lo, x); hi = max(hi, x) }
                    (scales[g * rows + r], zeros[g * rows + r]) = quantizer.parameters(min: lo, max: hi)
                }
            }
        }
        // The group permuted column k quantizes with: its natural group (static groups), or k / gs.
        let groupOf: [Int] = (0..<cols).map { k in o.groupSize == nil ? 0 : staticGroups ? order[k] / gs : k / gs }
        var rowLoss = [Double](repeating: 0, count: rows)
        for i1 in stride(from: 0, to: cols, by: o.blockSize) {
            let i2 = min(cols, i1 + o.blockSize), count = i2 - i1
            let w1 = Tensor(zeros: [count, rows]), err = Tensor(zeros: [count, rows])
            w1.pointer.update(from: wt.pointer + i1 * rows, count: count * rows)
            // Rows are independent within a block (each has its own parameters and errors).
            scales.withUnsafeMutableBufferPointer { scales in
                zeros.withUnsafeMutableBufferPointer { zeros in
                    codes.withUnsafeMutableBufferPointer { codes in
                        rowLoss.withUnsafeMutableBufferPointer { rowLoss in
                            Parallel.forEach(rows, minChunk: 8) { range in
                                for i in 0..<count {
                                    let col = i1 + i
                                    if o.groupSize != nil && !staticGroups && col % gs == 0 {
                                        let g = col / gs, c1 = min(cols, col + gs)
                                        for r in range {
                                            var lo = wt.pointer[col * rows + r], hi = lo
                                            for c in col..<c1 { let x = wt.pointer[c * rows + r]; lo = min(lo, x); hi = max(hi, x) }
                                            let (s, z) = quantizer.parameters(min: lo, max: hi)
                                            scales[g * rows + r] = s
                                            zeros[g * rows + r] = z
                                        }
                                    }
                                    let g = groupOf[col]
                                    let d = u[col, col]
                                    let wi = w1.pointer + i * rows, ei = err.pointer + i * rows
                                    for r in range {
                                        let s = scales[g * rows + r], z = zeros[g * rows + r]
                                        let code = quantizer.code(wi[r], scale: s, zero: z)
                                        let q = s * (code - z)
                                        codes[r * cols + col] = UInt8(code)
                                        let diff = wi[r] - q
                                        rowLoss[r] += Double(diff * diff / (d * d)) / 2
                                        ei[r] = diff / d
                                    }
                                    for j in i..<count {
                                        let hij = u[col, i1 + j], wj = w1.pointer + j * rows
                                        for r in range { wj[r] -= ei[r] * hij }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if i2 < cols {  // Wt[i2:] −= U[i1:i2, i2:]ᵀ · Err
                let rest = wt.pointer + i2 * rows
                gemm(MatrixRef(base: u.pointer + i1 * cols + i2, rows: count, cols: cols - i2, ld: cols), transposeA: true,
                     err.matrix, into: MatrixRef(base: rest, rows: cols - i2, cols: rows, ld: rows), alpha: -1, beta: 1)
            }
        }

        // Back to the original column order, each column's group as it was quantized.
        var unpermuted = [UInt8](repeating: 0, count: rows * cols)
        var groupIndex = [Int32](repeating: 0, count: cols)
        for (k, c) in order.enumerated() {
            groupIndex[c] = Int32(groupOf[k])
            for r in 0..<rows { unpermuted[r * cols + c] = codes[r * cols + k] }
        }
        let q = UniformQuantization(quantizer: quantizer, rows: rows, cols: cols, groupSize: gs, codes: unpermuted, scales: scales,
                                    zeros: zeros, groupIndex: groupIndex)
        return Result(quantization: q, loss: rowLoss.reduce(0, +), damp: percent)
    }

    /// Refuses a weight with NaN or infinity (codes are bytes: a NaN cannot become one).
    public static func requireFinite(_ w: Tensor, name: String) throws {
        if let i = w.buffer.firstIndex(where: { !$0.isFinite }) { throw Failure.nonFinite(name: name, index: i) }
    }
}
