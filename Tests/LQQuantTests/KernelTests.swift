import CKernels
import LQQuant
import LQTensor
import Testing

/// Every SIMD kernel against its scalar twin, and the fused products against BLAS on the
/// dequantized matrix.
struct KernelTests {
    static let scaleFormats: [ScaleFormat] = [.fp32, .dynamic8, .uint(bits: 3, groupSize: 16, dtype: .bf16),
                                              .uint(bits: 8, groupSize: 256, dtype: .fp32)]
    static let configs: [QuantConfig] = [2, 3, 4, 8].flatMap { b in
        [16, 32, 64].flatMap { bs in scaleFormats.map { QuantConfig(bits: b, blockSize: bs, scale: $0) } }
    }

    static func matrix(_ rows: Int, _ cols: Int, seed: UInt64) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return Tensor.gaussian([rows, cols], using: &rng, scale: 0.02)
    }

    /// A shape the format accepts: awkward (odd) unless LQ-LoRA scales need whole groups.
    static func shape(for c: QuantConfig) -> (Int, Int) {
        // Whole blocks, with a short last group of blocks.
        if case let .uint(_, g, _) = c.scale { return (g * c.blockSize / 64 * 3 + 1, 64) }
        return (37, 29)
    }

    @Test(arguments: configs)
    func simdDequantizationIsBitExact(config: QuantConfig) throws {
        let (r, c) = Self.shape(for: config)
        let q = try Quantizer.quantize(Self.matrix(r, c, seed: 1), config: config)
        #expect(q.dequantize(level: LQ_LEVEL_SCALAR).array == q.dequantize(level: lq_best_level()).array)
        // Ranges that start and end off block and vector boundaries.
        for (start, count) in [(5, 1000), (0, 17), (r * c - 9, 9), (64, 129)] where start + count <= r * c {
            var a = [Float](repeating: 0, count: count), b = [Float](repeating: 1, count: count)
            q.withCView { t in
                lq_dequantize_level(LQ_LEVEL_SCALAR, t, Int64(start), Int64(count), &a)
                lq_dequantize_level(lq_best_level(), t, Int64(start), Int64(count), &b)
            }
            #expect(a == b, "\(config) range \(start)+\(count)")
        }
    }

    @Test func everyGridConfigDequantizesIdenticallyOnEveryLevel() throws {
        let w = Self.matrix(64, 256, seed: 2)
        var failures: [String] = []
        for config in QuantConfig.lqloraGrid {
            let q = try Quantizer.quantize(w, config: config)
            if q.dequantize(level: LQ_LEVEL_SCALAR).array != q.dequantize(level: lq_best_level()).array {
                failures.append(config.name)
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    /// |y − y_ref| ≤ tol · Σ|w·x| per row: fp32 accumulation-order error bound.
    func expectClose(_ y: [Float], _ ref: [Double], _ magnitude: [Double], tol: Double, _ label: String) {
        let worst = zip(zip(y, ref), magnitude).map { abs(Double($0.0) - $0.1) / max($1, 1e-30) }.max() ?? 0
        #expect(worst <= tol, "\(label): worst relative error \(worst)")
    }

    @Test(arguments: configs)
    func fusedGemvMatchesTheReference(config: QuantConfig) throws {
        let (r, c) = config.scale == .fp32 || config.scale == .dynamic8 ? (45, 128) : Self.shape(for: config)
        let q = try Quantizer.quantize(Self.matrix(r, c, seed: 3), config: config)
        let x = Self.matrix(c, 1, seed: 4)
        let dense = q.dequantize(level: LQ_LEVEL_SCALAR)
        var ref = [Double](repeating: 0, count: r), magnitude = [Double](repeating: 0, count: r)
        for i in 0..<r {
            for j in 0..<c {
                ref[i] += Double(dense[i, j]) * Double(x.pointer[j])
                magnitude[i] += abs(Double(dense[i, j]) * Double(x.pointer[j]))
            }
        }
        for level in [LQ_LEVEL_SCALAR, lq_best_level()] {
            var y = [Float](repeating: .nan, count: r)
            q.gemv(x.pointer, &y, level: level)
            expectClose(y, ref, magnitude, tol: 1e-5, "\(config) level \(level.rawValue)")
        }
        // Against cblas_sgemv on the dequantized matrix.
        let yBlas = Tensor(zeros: [r, 1])
        gemv(dense.matrix, x: x.pointer, y: yBlas.pointer)
        expectClose(yBlas.array, ref, magnitude, tol: 1e-5, "\(config) sgemv")
    }

    @Test func gemvWhenBlocksStraddleRows() throws {
        // 29 columns, blocks of 64: blocks cross row boundaries and the kernels take the general path.
        let q = try Quantizer.quantize(Self.matrix(37, 29, seed: 5), config: .nf4DoubleQuant)
        let x = Self.matrix(29, 1, seed: 6)
        let dense = q.dequantize()
        let yDense = Tensor(zeros: [37, 1])
        gemv(dense.matrix, x: x.pointer, y: yDense.pointer)
        var y = [Float](repeating: 0, count: 37)
        q.gemv(x.pointer, &y)
        for i in 0..<37 { #expect(abs(y[i] - yDense.pointer[i]) <= 1e-5) }
    }

    @Test(arguments: [1, 3, 8, 9, 40])
    func matmulMatchesDenseSgemm(n: Int) throws {
        let q = try Quantizer.quantize(Self.matrix(256, 192, seed: 7), config: .qlora(bits: 3))
        let x = Self.matrix(n, 192, seed: 8)
        let got = q.matmul(x)
        let ref = matmul(x, q.dequantize(), transposeB: true)
        #expect(got.shape == [n, 256])
        var worst: Float = 0
        for i in 0..<got.count { worst = max(worst, abs(got.pointer[i] - ref.pointer[i])) }
        #expect(worst <= 1e-5, "n=\(n): max |Δ| \(worst)")
    }
}

struct PackingTests {
    @Test func layoutsAreAsDocumented() {
        var p4 = [UInt8](repeating: 0, count: 1), p2 = [UInt8](repeating: 0, count: 1), p3 = [UInt8](repeating: 0, count: 3)
        lq_put_code(&p4, 4, 0, 1); lq_put_code(&p4, 4, 1, 2)
        for (i, c) in [1, 2, 3, 0].enumerated() { lq_put_code(&p2, 2, Int64(i), UInt32(c)) }
        for (i, c) in [1, 2, 3, 4, 5, 6, 7, 0].enumerated() { lq_put_code(&p3, 3, Int64(i), UInt32(c)) }
        #expect(p4 == [0x12])  // first value in the high nibble (bitsandbytes)
        #expect(p2 == [0x6c])  // 01 10 11 00
        #expect(p3 == [0x29, 0xcb, 0xb8])  // 001 010 011 100 101 110 111 000
        #expect(lq_packed_bytes(3, 9) == 6 && lq_packed_bytes(4, 3) == 2 && lq_packed_bytes(2, 5) == 2 && lq_packed_bytes(8, 5) == 5)
    }

    @Test(arguments: [2, 3, 4, 8])
    func codesRoundTrip(bits: Int) {
        let n = 1001
        var rng = SeededGenerator(seed: UInt64(bits))
        let codes = (0..<n).map { _ in UInt32(rng.next() % UInt64(1 << bits)) }
        var packed = [UInt8](repeating: 0, count: lq_packed_bytes(Int32(bits), Int64(n)))
        for (i, c) in codes.enumerated() { lq_put_code(&packed, Int32(bits), Int64(i), c) }
        #expect((0..<n).map { lq_get_code(packed, Int32(bits), Int64($0)) } == codes)
    }
}

struct QuantConfigTests {
    @Test func gridAndCosts() {
        let grid = QuantConfig.lqloraGrid
        #expect(grid.count == 432 && Set(grid.map(\.name)).count == 432)
        #expect(grid.allSatisfy { QuantConfig.parse($0.name) == $0 })
        let qlora4: Double = 4 + 8.0 / 64 + 32.0 / (64 * 256)
        #expect(QuantConfig.qlora(bits: 4).bitsPerParameter == qlora4)
        #expect(abs(QuantConfig.qlora(bits: 4).bitsPerParameter - 4.127) < 5e-4)
        #expect(abs(QuantConfig.qlora(bits: 3).bitsPerParameter - 3.127) < 5e-4)
        #expect(QuantConfig.nf4DoubleQuant.bitsPerParameter == QuantConfig.qlora(bits: 4).bitsPerParameter)
        #expect(QuantConfig.plain(bits: 4).bitsPerParameter == 4.5)
        let costs = grid.map(\.bitsPerParameter)
        let cheapest: Double = 2 + 2.0 / 64 + 16.0 / (64 * 256)
        let dearest: Double = 8 + 8.0 / 16 + 32.0 / (16 * 16)
        #expect(abs(costs.min()! - cheapest) < 1e-12)
        #expect(costs.max()! == dearest)
        #expect(QuantConfig.parse("nf4-b64-dq8") == .nf4DoubleQuant && QuantConfig.parse("nf5-x") == nil)
    }

    @Test func errorFallsWithBits() throws {
        let w = KernelTests.matrix(128, 256, seed: 9)
        var last = Double.infinity
        for b in [2, 3, 4, 8] {
            let q = try Quantizer.quantize(w, config: .qlora(bits: b))
            let d = q.dequantize()
            var num = 0.0
            for i in 0..<w.count { num += Double((w.pointer[i] - d.pointer[i]) * (w.pointer[i] - d.pointer[i])) }
            let rel = num.squareRoot() / w.frobeniusNorm
            #expect(rel < last, "\(b) bits: \(rel)")
            last = rel
        }
        #expect(last < 0.01)
    }

    @Test func badInputIsNamed() {
        let w = Tensor(shape: [2, 64], values: (0..<128).map { $0 == 70 ? -.infinity : Float($0) })
        #expect(throws: QuantError.nonFinite(tensor: "layers.0.q_proj", index: 70, value: -.infinity)) {
            try Quantizer.quantize(w, config: .nf4DoubleQuant, name: "layers.0.q_proj")
        }
        let small = Tensor(zeros: [3, 60])
        #expect(throws: QuantError.notDivisible(tensor: "w", count: 180, multiple: 64, config: "nf3-b64-s8g256-fp32")) {
            try Quantizer.quantize(small, config: .qlora(bits: 3), name: "w")
        }
    }
}
