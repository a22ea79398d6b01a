import Foundation
import LQQuant
import LQTensor

/// W ≈ Q + L1·L2 (Guo et al., LQ-LoRA): Q quantized with a given configuration, L1·L2 of rank r,
/// found by alternating a rank-r SVD of W − Q with quantizing W − L1·L2. With a diagonal Fisher
/// matrix F, the SVD is of diag(r)(W − Q)diag(c) (r_i = √mean_j F_ij, c_j = √mean_i F_ij) and the
/// error is ‖√F ⊙ (W − Q − L1·L2)‖²; quantization itself stays unweighted, as in the paper.
public enum Decomposition {
    public enum SVDMethod: String, Sendable {
        case randomized, full
    }

    public struct Result: @unchecked Sendable {
        public let q: QuantizedMatrix
        public let l1: Tensor  // [rows, rank]
        public let l2: Tensor  // [rank, cols]
        /// The objective after each iteration (Frobenius error, or Fisher-weighted squared error).
        public let errors: [Double]
        /// The iteration whose iterate is returned (the best one, not the last).
        public let bestIteration: Int
        /// The objective of plain quantization (no low-rank part), for comparison.
        public let quantizationOnlyError: Double
        public var error: Double { errors[bestIteration] }
    }

    public static func decompose(_ w: Tensor, config: QuantConfig, rank: Int, maxIterations: Int = 20,
                                 svd method: SVDMethod = .randomized, fisher: Tensor? = nil, seed: UInt64 = 0,
                                 name: String = "tensor") throws -> Result {
        precondition(w.rank == 2)
        let m = w.shape[0], n = w.shape[1]
        precondition(rank >= 1 && rank < min(m, n), "rank \(rank) must be below min(\(m), \(n))")
        if let fisher { precondition(fisher.shape == w.shape, "Fisher shape \(fisher.shape) differs from \(w.shape)") }
        var rng = SeededGenerator(seed: seed)
        let (rowScale, colScale) = fisher.map(scales) ?? ([], [])

        func objective(_ residual: Tensor) -> Double {
            var s = 0.0
            if let fisher {
                for i in 0..<residual.count { s += Double(fisher.pointer[i]) * Double(residual.pointer[i]) * Double(residual.pointer[i]) }
                return s
            }
            for i in 0..<residual.count { s += Double(residual.pointer[i]) * Double(residual.pointer[i]) }
            return s.squareRoot()
        }

        let q0 = try Quantizer.quantize(w, config: config, name: name)
        let quantOnly = objective(subtract(w, q0.dequantize()))

        var qDense = Tensor(zeros: [m, n])
        var best: (q: QuantizedMatrix, l1: Tensor, l2: Tensor)?
        var errors: [Double] = []
        var bestIteration = 0
        for iteration in 0..<maxIterations {
            // Low-rank step on (optionally Fisher-scaled) W − Q.
            let residual = subtract(w, qDense)
            if fisher != nil { scaleRowsCols(residual, rowScale, colScale) }
            let d = method == .full ? try svd(residual) : try randomizedSVD(residual, rank: rank, rng: &rng)
            let l1 = Tensor(zeros: [m, rank]), l2 = Tensor(zeros: [rank, n])
            for k in 0..<rank {
                let root = d.s[k].squareRoot()
                for i in 0..<m { l1[i, k] = d.u[i, k] * root }
                for j in 0..<n { l2[k, j] = d.vt[k, j] * root }
            }
            if fisher != nil {
                for i in 0..<m { for k in 0..<rank { l1[i, k] /= rowScale[i] } }
                for k in 0..<rank { for j in 0..<n { l2[k, j] /= colScale[j] } }
            }
            // Quantization step on W − L1·L2.
            let lowRank = matmul(l1, l2)
            let q = try Quantizer.quantize(subtract(w, lowRank), config: config, name: name)
            qDense = q.dequantize()
            let err = objective(subtract(subtract(w, qDense), lowRank))
            errors.append(err)
            if best == nil || err < errors[bestIteration] {
                best = (q, l1, l2)
                bestIteration = iteration
            } else {
                break  // the error stopped decreasing: keep the best iterate, not this one
            }
        }
        return Result(q: best!.q, l1: best!.l1, l2: best!.l2, errors: errors, bestIteration: bestIteration,
                      quantizationOnlyError: quantOnly)
    }

    /// Row and column weights √(mean F) with zeros replaced by the smallest positive weight
    /// (a zero would make the unscaling divide by zero).
    public static func scales(_ f: Tensor) -> ([Float], [Float]) {
        let m = f.shape[0], n = f.shape[1]
        var rows = [Double](repeating: 0, count: m), cols = [Double](repeating: 0, count: n)
        for i in 0..<m {
            for j in 0..<n {
                let v = Double(f[i, j])
                rows[i] += v
                cols[j] += v
            }
        }
        func finish(_ sums: [Double], _ count: Int) -> [Float] {
            let r = sums.map { ($0 / Double(count)).squareRoot() }
            let floor = r.filter { $0 > 0 }.min() ?? 1
            return r.map { Float($0 > 0 ? $0 : floor) }
        }
        return (finish(rows, n), finish(cols, m))
    }

    public static func subtract(_ a: Tensor, _ b: Tensor) -> Tensor {
        let out = Tensor(zeros: a.shape)
        for i in 0..<a.count { out.pointer[i] = a.pointer[i] - b.pointer[i] }
        return out
    }

    public static func scaleRowsCols(_ t: Tensor, _ r: [Float], _ c: [Float]) {
        let m = t.shape[0], n = t.shape[1]
        for i in 0..<m { for j in 0..<n { t.pointer[i * n + j] *= r[i] * c[j] } }
    }
}
