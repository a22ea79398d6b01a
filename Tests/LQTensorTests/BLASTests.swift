import LQTensor
import Testing

struct BLASTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmMatchesTripleLoop(ta: Bool, tb: Bool) {
        var rng = SeededGenerator(seed: 7)
        let m = 13, k = 29, n = 7
        let a = Tensor.gaussian(ta ? [k, m] : [m, k], using: &rng)
        let b = Tensor.gaussian(tb ? [n, k] : [k, n], using: &rng)
        let c0 = Tensor.gaussian([m, n], using: &rng)
        let c = c0.copy()
        gemm(a.matrix, transposeA: ta, b.matrix, transposeB: tb, into: c.matrix, alpha: 0.5, beta: -2)
        let ref = naiveMatmul(a.matrix, ta, b.matrix, tb)
        for i in 0..<m {
            for j in 0..<n {
                let expected = 0.5 * ref[i][j] - 2 * Double(c0[i, j])
                #expect(abs(Double(c[i, j]) - expected) <= 1e-5 * max(1, abs(expected)))
            }
        }
    }

    @Test func gemmOnStridedBlocks() {
        var rng = SeededGenerator(seed: 8)
        let big = Tensor.gaussian([20, 30], using: &rng)
        let a = big.block(rows: 2..<9, cols: 3..<14)  // 7×11
        let b = big.block(rows: 5..<16, cols: 20..<25)  // 11×5
        let out = Tensor(zeros: [12, 12])
        let c = out.block(rows: 1..<8, cols: 4..<9)
        gemm(a, b, into: c)
        let ref = naiveMatmul(a, false, b, false)
        for i in 0..<7 { for j in 0..<5 { #expect(abs(Double(c[i, j]) - ref[i][j]) < 1e-4) } }
        // Nothing outside the block was touched.
        #expect(out[0, 0] == 0 && out[8, 4] == 0 && out[1, 3] == 0 && out[1, 9] == 0)
    }

    @Test(arguments: [false, true])
    func gemvMatchesTripleLoop(transpose: Bool) {
        var rng = SeededGenerator(seed: 9)
        let a = Tensor.gaussian([17, 23], using: &rng)
        let xLen = transpose ? 17 : 23, yLen = transpose ? 23 : 17
        let x = Tensor.gaussian([xLen, 1], using: &rng)
        let y = Tensor(zeros: [yLen, 1])
        gemv(a.matrix, transpose: transpose, x: x.pointer, y: y.pointer)
        let ref = naiveMatmul(a.matrix, transpose, x.matrix, false)
        for i in 0..<yLen { #expect(abs(Double(y.pointer[i]) - ref[i][0]) < 1e-4) }
    }

    /// Products big enough to be tiled (rows, columns, both transposes) against a double-precision
    /// reference, and OpenBLAS left single-threaded (its own threading would make results depend on it).
    @Test(arguments: [(300, 70, 1000), (70, 600, 300), (256, 256, 256)])
    func tiledProductsMatchTheReference(m: Int, n: Int, k: Int) {
        var rng = SeededGenerator(seed: UInt64(m * n + k))
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = Tensor.gaussian(ta ? [k, m] : [m, k], using: &rng), b = Tensor.gaussian(tb ? [n, k] : [k, n], using: &rng)
            let c = Tensor(zeros: [m, n])
            gemm(a.matrix, transposeA: ta, b.matrix, transposeB: tb, into: c.matrix)
            let ref = naiveMatmul(a.matrix, ta, b.matrix, tb)
            var worst = 0.0
            for i in 0..<m { for j in 0..<n { worst = max(worst, abs(Double(c[i, j]) - ref[i][j])) } }
            #expect(worst < 1e-3, "\(m)x\(n)x\(k) transposes \(ta) \(tb): \(worst)")
        }
        #expect(BLASThreads.count == 1)
    }
}
