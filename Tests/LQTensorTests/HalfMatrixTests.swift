import CKernels
import LQTensor
import Testing

/// 16-bit weights kept as stored: products against the fp32 matrix they widen to exactly.
struct HalfMatrixTests {
    /// A random rows × cols matrix in `kind`, and the fp32 values its bits hold (the exact oracle).
    static func matrix(_ kind: HalfMatrix.Kind, _ rows: Int, _ cols: Int, seed: UInt64) -> (HalfMatrix, Tensor) {
        var rng = SeededGenerator(seed: seed)
        let values = Tensor.gaussian([rows, cols], using: &rng, scale: 0.5)
        var bits = values.array.map { kind == .bf16 ? lq_f32_to_bf16_ref($0) : lq_f32_to_f16_ref($0) }
        let exact = Tensor(shape: [rows, cols], values: bits.map { kind == .bf16 ? lq_bf16_to_f32_ref($0) : lq_f16_to_f32_ref($0) })
        let m = bits.withUnsafeMutableBytes { HalfMatrix(kind: kind, rows: rows, cols: cols, copying: UnsafeRawBufferPointer($0)) }
        return (m, exact)
    }

    @Test(arguments: [HalfMatrix.Kind.bf16, .f16])
    func widenIsExactAndGemvMatchesDoublePrecisionOnEveryLevel(kind: HalfMatrix.Kind) {
        for (rows, cols) in [(37, 29), (5, 576), (1, 7)] {
            let (m, exact) = Self.matrix(kind, rows, cols, seed: 3)
            let widened = Tensor(zeros: [rows, cols])
            m.widen(rows: 0..<rows, into: widened.pointer)
            #expect(widened.array == exact.array)
            var rng = SeededGenerator(seed: 4)
            let x = Tensor.gaussian([cols], using: &rng)
            for level in [LQ_LEVEL_SCALAR, lq_best_level()] {
                var y = [Float](repeating: .nan, count: rows)
                m.gemv(x.pointer, &y, level: level)
                for r in 0..<rows {
                    var want = 0.0, magnitude = 0.0
                    for c in 0..<cols {
                        want += Double(exact[r, c]) * Double(x.pointer[c])
                        magnitude += abs(Double(exact[r, c]) * Double(x.pointer[c]))
                    }
                    #expect(abs(Double(y[r]) - want) <= 1e-6 * magnitude, "\(kind) \(rows)x\(cols) row \(r) level \(level.rawValue)")
                }
            }
        }
    }

    @Test(arguments: [1, 3, 9, 40])
    func productsMatchSgemmOnTheWidenedMatrix(n: Int) {
        let (m, exact) = Self.matrix(.bf16, 300, 136, seed: 5)
        var rng = SeededGenerator(seed: 6)
        let x = Tensor.gaussian([n, 136], using: &rng)
        #expect(maxAbsDifference(m.matmul(x), matmul(x, exact, transposeB: true)) <= 1e-4)
        let dy = Tensor.gaussian([n, 300], using: &rng), dx = Tensor.gaussian([n, 136], using: &rng)
        let want = dx.copy()
        gemm(dy.matrix, exact.matrix, into: want.matrix, beta: 1)
        m.accumulateTransposedProduct(dy, into: dx)
        #expect(maxAbsDifference(dx, want) <= 1e-4)
    }
}
