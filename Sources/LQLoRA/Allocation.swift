import Foundation
import LQQuant
import LQTensor

/// Per-matrix errors for every candidate configuration, the input of the bit-allocation ILP.
///
/// Computing the full decomposition for every (matrix, configuration) pair is what makes the
/// reference take hours. Here every configuration shares the first iteration's SVD of W (Q = 0),
/// so each pair costs one quantization: e_ij = ‖W − L − quant_j(W − L)‖ (Fisher-weighted when F
/// is given). The chosen configuration is then decomposed in full.
public enum ErrorTable {
    /// The candidate sets: the whole LQ-LoRA grid (432), or the grid with group absmax stored as
    /// bf16 only (144: a third of the work; fp32 and fp16 scales cost as much or more for the same error).
    public enum Grid: String, CaseIterable, Sendable {
        case full, compact
    }

    public static func candidates(_ grid: Grid) -> [QuantConfig] {
        let all = QuantConfig.lqloraGrid
        return grid == .compact ? all.filter { if case .uint(_, _, .bf16) = $0.scale { return true } else { return false } } : all
    }

    /// Errors of `w` under each configuration, after removing its rank-r part (none when rank is 0),
    /// found with the same SVD method as the decomposition that follows.
    public static func errors(_ w: Tensor, configs: [QuantConfig], rank: Int, fisher: Tensor? = nil,
                              svd method: Decomposition.SVDMethod = .randomized, seed: UInt64 = 0,
                              name: String = "tensor") throws -> [Double] {
        var target = w
        if rank > 0 {
            var rng = SeededGenerator(seed: seed)
            var scaled = w
            let scales = fisher.map(Decomposition.scales)
            if let (r, c) = scales {
                scaled = w.copy()
                Decomposition.scaleRowsCols(scaled, r, c)
            }
            let d = method == .full ? try svd(scaled) : try randomizedSVD(scaled, rank: rank, rng: &rng)
            let lowRank = d.reconstruct(rank: rank)
            if let (r, c) = scales {
                Decomposition.scaleRowsCols(lowRank, r.map { 1 / $0 }, c.map { 1 / $0 })
            }
            target = Decomposition.subtract(w, lowRank)
        }
        var out: [Double] = []
        for config in configs {
            let q = try Quantizer.quantize(target, config: config, name: name)
            let d = q.dequantize()
            let t = target.pointer, dp = d.pointer
            var s = 0.0
            // This loop runs once per matrix and configuration: keep the Fisher branch outside it.
            if let f = fisher?.pointer {
                for i in 0..<d.count {
                    let e = Double(t[i]) - Double(dp[i])
                    s += Double(f[i]) * e * e
                }
                out.append(s)
            } else {
                for i in 0..<d.count {
                    let e = Double(t[i]) - Double(dp[i])
                    s += e * e
                }
                out.append(s.squareRoot())
            }
        }
        return out
    }
}
