import CKernels
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
        let values = UnsafeBufferPointer(target.buffer)
        if let bad = values.firstIndex(where: { !$0.isFinite }) { throw QuantError.nonFinite(tensor: name, index: bad, value: values[bad]) }
        // Block absmaxes depend on the block size alone, scales on the scale settings: each is made
        // once, then every configuration is one fused pass (lq_block_error_level) that never writes
        // codes or values. Configurations run in parallel, each pass whole, so the sums do not depend
        // on the thread count.
        var absmax: [Int: [Float]] = [:]
        for bs in Set(configs.map(\.blockSize)) { absmax[bs] = Quantizer.blockAbsmax(values, blockSize: bs) }
        let codebooks = Dictionary(uniqueKeysWithValues: Set(configs.map(\.bits)).map { bits -> (Int, ([Float], [Float])) in
            let c = NormalFloat.codebook(bits: bits)
            return (bits, (c, NormalFloat.midpoints(c)))
        })
        var out = [Double](repeating: 0, count: configs.count)
        var failure: Error?
        let lock = NSLock()
        out.withUnsafeMutableBufferPointer { results in
            let rp = results.baseAddress!
            Parallel.forEach(configs.count, minChunk: 1) { range in
                for j in range {
                    do {
                        rp[j] = try error(of: target, config: configs[j], absmax: absmax[configs[j].blockSize]!, codebook: codebooks[configs[j].bits]!,
                                          fisher: fisher, name: name)
                    } catch {
                        lock.lock()
                        failure = failure ?? error
                        lock.unlock()
                    }
                }
            }
        }
        if let failure { throw failure }
        return out
    }

    /// One entry: ‖W − dequant(quant(W))‖ (Fisher: Σ F·(W − dequant)², not rooted). LQ-LoRA's
    /// integer scales take the fused kernel; any other scale format is measured in full.
    static func error(of target: Tensor, config: QuantConfig, absmax: [Float], codebook: (values: [Float], midpoints: [Float]),
                      fisher: Tensor?, name: String) throws -> Double {
        let n = target.count
        guard case let .uint(scaleBits, groupSize, dtype) = config.scale else {
            return try measuredError(of: target, config: config, fisher: fisher, name: name)
        }
        guard n % config.blockSize == 0 else { throw QuantError.notDivisible(tensor: name, count: n, multiple: config.blockSize, config: config.name) }
        let scales = Quantizer.uintScales(absmax: absmax, scaleBits: scaleBits, groupSize: groupSize, dtype: dtype).scales
        let s = lq_block_error_level(lq_active_level(), target.pointer, fisher?.pointer, 0, Int64(n), Int32(config.blockSize), scales,
                                     codebook.midpoints, codebook.values, Int32(config.bits))
        return fisher == nil ? s.squareRoot() : s
    }

    /// The same entry the long way, quantize then dequantize then measure (summed in order): what
    /// the fused kernel is tested and benchmarked against.
    public static func measuredError(of target: Tensor, config: QuantConfig, fisher: Tensor? = nil, name: String = "tensor") throws -> Double {
        let d = try Quantizer.quantize(target, config: config, name: name).dequantize()
        let t = target.pointer, dp = d.pointer
        var s = 0.0
        if let f = fisher?.pointer {
            for i in 0..<d.count {
                let e = Double(t[i]) - Double(dp[i])
                s += Double(f[i]) * e * e
            }
            return s
        }
        for i in 0..<d.count {
            let e = Double(t[i]) - Double(dp[i])
            s += e * e
        }
        return s.squareRoot()
    }
}
