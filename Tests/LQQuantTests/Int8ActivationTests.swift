import CKernels
import LQQuant
import LQTensor
import Testing

/// The int8-activation product (lq_q8.h) through QuantizedMatrix: its codebooks, its SIMD level
/// against the scalar twin, batches against single rows, and the error against the exact product.
/// The C test (scripts/test-kernels-c.sh) checks the kernels themselves on every configuration.
struct Int8ActivationTests {
    /// The int8 codebooks as scripts/q8-codebooks.py computes them with numpy and scipy from the
    /// NormalFloat codebooks, by the rule of lq_q8_codebook_make (s = i/256 in [64, 127.5) of least
    /// squared error, ties to the larger).
    @Test func codebooksAreTheLeastSquaresScaling() {
        let expected: [Int: (s: Double, values: [Int8])] = [
            2: (74.0, [-74, 0, 25, 74]),
            3: (118.99609375, [-119, -57, -26, 0, 19, 40, 67, 119]),
            4: (112.03125, [-112, -78, -59, -44, -32, -21, -10, 0, 9, 18, 28, 38, 49, 63, 81, 112]),
        ]
        for bits in [2, 3, 4, 8] {
            let c = NormalFloat.int8Codebook(bits: bits), codebook = NormalFloat.codebook(bits: bits)
            let values = withUnsafeBytes(of: c.values) { Array($0.bindMemory(to: Int8.self).prefix(1 << bits)) }
            if let e = expected[bits] {
                #expect(values == e.values, "NF\(bits)")
                #expect(c.scale == Float(1 / e.s), "NF\(bits): scale \(c.scale)")
            } else {  // NF8: s = 127.0234375 by the same script
                #expect(c.scale == Float(1 / 127.0234375), "NF8: scale \(c.scale)")
            }
            // Every code within half a step, none past ±127.
            for (v, x) in zip(values, codebook) { #expect(abs(Float(v) * c.scale - x) <= c.scale / 2 * 1.000001, "NF\(bits) code \(x)") }
        }
    }

    static let configs: [QuantConfig] = [.nf4DoubleQuant, .plain(bits: 3), .qlora(bits: 2), .plain(bits: 8, blockSize: 32),
                                         QuantConfig(bits: 3, blockSize: 16, scale: .uint(bits: 4, groupSize: 64, dtype: .bf16)),
                                         QuantConfig(bits: 4, blockSize: 16, scale: .uint(bits: 8, groupSize: 16, dtype: .fp16))]

    /// One row or a batch of 11: each row of the batch equals that row alone bit for bit, at the SIMD
    /// level equals the scalar twin, and lies within 2 % (relative RMS over the outputs) of the exact
    /// product: x's rounding to 127 levels per block of 32 costs about 0.6 %, the int8 codebook 0.3 %.
    @Test(arguments: configs)
    func productMatchesTheScalarTwinAndTheExactProduct(config: QuantConfig) throws {
        let (rows, cols) = (48, 352)  // 11 activation blocks: a lone last one
        var rng = SeededGenerator(seed: 5)
        let q = try Quantizer.quantize(Tensor.gaussian([rows, cols], using: &rng, scale: 0.02), config: config)
        let x = Tensor.gaussian([11, cols], using: &rng)
        let batch = Tensor(zeros: [11, rows]), scalar = Tensor(zeros: [11, rows]), one = Tensor(zeros: [11, rows])
        q.int8Product(x.pointer, rows: 11, into: batch.pointer, level: lq_best_level())
        q.int8Product(x.pointer, rows: 11, into: scalar.pointer, level: LQ_LEVEL_SCALAR)
        for i in 0..<11 { q.int8Product(x.pointer + i * cols, rows: 1, into: one.pointer + i * rows) }
        expectIdentical(batch.array, scalar.array, "\(config): SIMD against the scalar twin")
        expectIdentical(batch.array, one.array, "\(config): a batch against single rows")
        let exact = q.matmul(x, gpu: nil)
        let error = zip(batch.array, exact.array).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
        let size = exact.array.map { Double($0) * Double($0) }.reduce(0, +)
        #expect((error / size).squareRoot() < 0.02, "\(config): relative RMS error \((error / size).squareRoot())")
    }

    /// x with outlier channels (every 29th at 12×, as SmolLM2's hidden states hold channels at 5-12×
    /// their RMS): with the outlier residual (lq_q8.h, τ = 2 and τ = 0, every block) the SIMD level
    /// equals the scalar twin and a batch its rows alone, bit for bit; the blocks' residual shrinks
    /// the error against the exact product below plain Q8_0's, and more with every block flagged (the
    /// int8 codebook's share remains, under 2 %), and x without a flagged block gives plain Q8_0's bits.
    @Test(arguments: configs)
    func outlierResidualMatchesTheScalarTwinAndShrinksTheError(config: QuantConfig) throws {
        let (rows, cols) = (48, 352)
        var rng = SeededGenerator(seed: 7)
        let q = try Quantizer.quantize(Tensor.gaussian([rows, cols], using: &rng, scale: 0.02), config: config)
        let x = Tensor.gaussian([11, cols], using: &rng)
        let plainX = x.array
        for i in 0..<11 { for c in stride(from: 3 + i, to: cols, by: 29) { x.pointer[i * cols + c] *= 12 } }
        let exact = q.matmul(x, gpu: nil)
        func relativeError(_ y: Tensor) -> Double {
            let e = zip(y.array, exact.array).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
            return (e / exact.array.map { Double($0) * Double($0) }.reduce(0, +)).squareRoot()
        }
        var errors: [Float: Double] = [:]
        for tau: Float in [.infinity, 2, 0] {
            let batch = Tensor(zeros: [11, rows]), scalar = Tensor(zeros: [11, rows]), one = Tensor(zeros: [11, rows])
            q.int8Product(x.pointer, rows: 11, into: batch.pointer, level: lq_best_level(), outlierRatio: tau)
            q.int8Product(x.pointer, rows: 11, into: scalar.pointer, level: LQ_LEVEL_SCALAR, outlierRatio: tau)
            for i in 0..<11 { q.int8Product(x.pointer + i * cols, rows: 1, into: one.pointer + i * rows, outlierRatio: tau) }
            expectIdentical(batch.array, scalar.array, "\(config) τ \(tau): SIMD against the scalar twin")
            expectIdentical(batch.array, one.array, "\(config) τ \(tau): a batch against single rows")
            errors[tau] = relativeError(batch)
        }
        let (plain, flagged, all) = (errors[.infinity]!, errors[2]!, errors[0]!)
        #expect(flagged < plain && all < flagged && all < 0.02, "\(config): relative RMS error plain \(plain), τ 2 \(flagged), τ 0 \(all)")
        // Bell-shaped x without outliers: τ = 2 flags no block, so the bits are plain Q8_0's.
        let bell = Tensor(zeros: [11, cols])
        for (k, v) in plainX.enumerated() { bell.pointer[k] = v }
        let a = Tensor(zeros: [11, rows]), b = Tensor(zeros: [11, rows])
        q.int8Product(bell.pointer, rows: 11, into: a.pointer, outlierRatio: 2)
        q.int8Product(bell.pointer, rows: 11, into: b.pointer, outlierRatio: .infinity)
        expectIdentical(a.array, b.array, "\(config): no flagged block, plain Q8_0's bits")
    }

    /// The matrix's activation path chooses the product: int8 for every batch, for decoding-size
    /// batches only, or never, where the exact products are the same bits as before.
    @Test func theActivationPathChoosesTheProduct() throws {
        var rng = SeededGenerator(seed: 9)
        let q = try Quantizer.quantize(Tensor.gaussian([64, 128], using: &rng, scale: 0.02), config: .nf4DoubleQuant)
        let few = Tensor.gaussian([2, 128], using: &rng), many = Tensor.gaussian([QuantizedMatrix.gemvRowLimit + 1, 128], using: &rng)
        let exactFew = q.matmul(few, gpu: nil), exactMany = q.matmul(many, gpu: nil)
        let int8Few = Tensor(zeros: [2, 64]), int8Many = Tensor(zeros: [many.shape[0], 64])
        q.int8Product(few.pointer, rows: 2, into: int8Few.pointer)
        q.int8Product(many.pointer, rows: many.shape[0], into: int8Many.pointer)
        #expect(exactFew.array != int8Few.array)
        q.activations = .int8Decode
        #expect(q.matmul(few, gpu: nil).array == int8Few.array)
        #expect(q.matmul(many, gpu: nil).array == exactMany.array, "a prompt-sized batch keeps the exact path")
        q.activations = .int8
        #expect(q.matmul(many, gpu: nil).array == int8Many.array)
        q.activations = .exact
        #expect(q.matmul(few, gpu: nil).array == exactFew.array && q.matmul(many, gpu: nil).array == exactMany.array)
    }
}
