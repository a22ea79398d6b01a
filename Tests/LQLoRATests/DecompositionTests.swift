import Foundation
import LQLoRA
import LQQuant
import LQTensor
import Testing

struct DecompositionTests {
    /// A matrix with a strong rank-8 part plus noise: what LQ-LoRA is meant to split.
    static func lowRankPlusNoise(seed: UInt64) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        let a = Tensor.gaussian([256, 8], using: &rng, scale: 0.3), b = Tensor.gaussian([8, 256], using: &rng, scale: 0.3)
        let w = matmul(a, b)
        let noise = Tensor.gaussian([256, 256], using: &rng, scale: 0.02)
        for i in 0..<w.count { w.pointer[i] += noise.pointer[i] }
        return w
    }

    /// ‖W − Q − L1·L2‖ recomputed from the returned factors (independent of the loop's bookkeeping).
    static func residualNorm(_ w: Tensor, _ r: Decomposition.Result, fisher: Tensor? = nil) -> Double {
        let q = r.q.dequantize(), lr = matmul(r.l1, r.l2)
        var s = 0.0
        for i in 0..<w.count {
            let e = Double(w.pointer[i]) - Double(q.pointer[i]) - Double(lr.pointer[i])
            s += (fisher.map { Double($0.pointer[i]) } ?? 1) * e * e
        }
        return fisher == nil ? s.squareRoot() : s
    }

    @Test(arguments: [Decomposition.SVDMethod.randomized, .full])
    func lowRankPartIsFound(method: Decomposition.SVDMethod) throws {
        let w = Self.lowRankPlusNoise(seed: 1)
        let r = try Decomposition.decompose(w, config: .qlora(bits: 3), rank: 8, maxIterations: 20, svd: method)
        #expect(r.l1.shape == [256, 8] && r.l2.shape == [8, 256])
        #expect(r.error < 0.5 * r.quantizationOnlyError, "\(r.error) vs quantization alone \(r.quantizationOnlyError)")
        #expect(abs(Self.residualNorm(w, r) - r.error) <= 1e-4 * r.error)
        #expect(r.errors[r.bestIteration] == r.errors.min())
        // The loop stops at the first iteration that does not improve, and keeps the one before.
        #expect(r.bestIteration == r.errors.count - 1 || r.bestIteration == r.errors.count - 2)
        for k in 1...r.bestIteration { #expect(r.errors[k] < r.errors[k - 1]) }
    }

    @Test func uniformFisherIsTheUnweightedProblem() throws {
        let w = Self.lowRankPlusNoise(seed: 2)
        let ones = Tensor(shape: w.shape, values: [Float](repeating: 1, count: w.count))
        let plain = try Decomposition.decompose(w, config: .qlora(bits: 3), rank: 8, seed: 5)
        let weighted = try Decomposition.decompose(w, config: .qlora(bits: 3), rank: 8, fisher: ones, seed: 5)
        #expect(Decomposition.scales(ones) == ([Float](repeating: 1, count: 256), [Float](repeating: 1, count: 256)))
        // The same problem, iterate for iterate: scaling by ones is exact, and no product depends on the
        // thread count or on other tests (gemm's tiles are fixed by shape), so only the objective's
        // form differs (a weighted sum of squares against a norm).
        #expect(weighted.errors.count == plain.errors.count && weighted.bestIteration == plain.bestIteration)
        for (w, p) in zip(weighted.errors, plain.errors) { #expect(abs(w - p * p) <= 1e-12 * w, "\(w) vs \(p)²") }
        #expect(weighted.q.dequantize().array == plain.q.dequantize().array)
    }

    @Test func fisherWeightingLowersTheWeightedError() throws {
        let w = Self.lowRankPlusNoise(seed: 3)
        var rng = SeededGenerator(seed: 9)
        // Row and column importances spanning two orders of magnitude, as real Fisher diagonals do.
        let rows = (0..<256).map { _ in powf(10, Float(rng.next() % 1000) / 500) }, cols = (0..<256).map { _ in powf(10, Float(rng.next() % 1000) / 500) }
        let f = Tensor(zeros: [256, 256])
        for i in 0..<256 { for j in 0..<256 { f[i, j] = rows[i] * cols[j] } }
        let plain = try Decomposition.decompose(w, config: .qlora(bits: 2), rank: 8, seed: 5)
        let weighted = try Decomposition.decompose(w, config: .qlora(bits: 2), rank: 8, fisher: f, seed: 5)
        let plainWeighted = Self.residualNorm(w, plain, fisher: f)
        #expect(abs(Self.residualNorm(w, weighted, fisher: f) - weighted.error) <= 1e-4 * weighted.error)
        #expect(weighted.error < plainWeighted, "Fisher-weighted \(weighted.error) vs unweighted split \(plainWeighted)")
    }
}

/// The error table's fused kernel against quantize → dequantize → measure.
struct FusedErrorTableTests {
    @Test func everyGridConfigurationEqualsTheMeasuredError() throws {
        var rng = SeededGenerator(seed: 11)
        let w = Tensor.gaussian([96, 192], using: &rng, scale: 0.05)
        // Outliers (blocks whose absmax dwarfs the rest) and an all-zero block, as real weights have.
        w.pointer[7] = 0.9
        w.pointer[1000] = -0.7
        for i in 4096..<4160 { w.pointer[i] = 0 }
        let fisher = Tensor(shape: w.shape, values: (0..<w.count).map { _ in Float(rng.next() % 1000) / 250 + 0.01 })
        let configs = QuantConfig.lqloraGrid
        for f in [nil, fisher] {
            let fused = try ErrorTable.errors(w, configs: configs, rank: 0, fisher: f)
            var worst = 0.0
            for (config, e) in zip(configs, fused) {
                let measured = try ErrorTable.measuredError(of: w, config: config, fisher: f)
                worst = max(worst, abs(e - measured) / measured)
            }
            // The two sum in other orders (eight lanes against one running sum); every term is the same.
            #expect(worst <= 1e-12, "fisher \(f != nil): worst relative difference \(worst)")
        }
        // The table does not depend on the thread count (configurations run whole, each on one thread).
        let two = try ErrorTable.errors(w, configs: configs, rank: 0)
        Parallel.configure(threads: 1)
        defer { Parallel.configure(threads: nil) }
        #expect(try ErrorTable.errors(w, configs: configs, rank: 0) == two)
    }
}
