import CKernels
import Testing

/// fp16/bf16 conversions: the scalar references against independent oracles (Swift's Float16,
/// and exact double-precision rounding for bf16), then every SIMD level against the scalar one.
struct ConversionTests {
    static let allPatterns: [UInt16] = (0...UInt16.max).map { $0 }
    static let simdLevel = lq_best_level()

    /// Float bit patterns equal, or both NaN (payloads may differ between paths).
    func sameValue(_ a: Float, _ b: Float) -> Bool {
        (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern
    }

    @Test func f16ScalarMatchesSwiftFloat16ForAllPatterns() {
        var mismatches = 0
        for h in Self.allPatterns {
            let expected = Float(Float16(bitPattern: h))
            if !sameValue(lq_f16_to_f32_ref(h), expected) { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func bf16ScalarIsTheUpperHalfOfFp32ForAllPatterns() {
        for h in Self.allPatterns {
            let v = lq_bf16_to_f32_ref(h)
            #expect(v.bitPattern == UInt32(h) << 16)
        }
    }

    @Test func simdWidensAllPatternsLikeScalar() {
        let n = Self.allPatterns.count
        var scalar = [Float](repeating: 0, count: n), simd = [Float](repeating: 0, count: n)
        for (ref, level) in [(lq_f16_to_f32_level, Self.simdLevel), (lq_bf16_to_f32_level, Self.simdLevel)] {
            ref(LQ_LEVEL_SCALAR, Self.allPatterns, &scalar, n)
            ref(level, Self.allPatterns, &simd, n)
            let bad = (0..<n).filter { !sameValue(scalar[$0], simd[$0]) }
            #expect(bad.isEmpty, "level \(String(cString: lq_level_name(level))): \(bad.count) mismatches, first \(bad.first.map { String($0, radix: 16) } ?? "")")
        }
    }

    /// Inputs that exercise rounding: ties, subnormals, overflow edges, specials, and random bits.
    static func narrowingInputs() -> [Float] {
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, 65504, 65519.99, 65520, 65536, 1e-8, -1e-8,
                               Float(bitPattern: 0x3380_0000), Float(bitPattern: 0x3300_0000), Float(bitPattern: 0x3300_0001),
                               .leastNonzeroMagnitude, .greatestFiniteMagnitude, 6.1035156e-05, 5.9604645e-08]
        // Every half value, and the midpoints between neighbours (exact ties).
        for h in stride(from: 0, to: 0x7c00, by: 1) {
            let a = Float(Float16(bitPattern: UInt16(h)))
            let b = Float(Float16(bitPattern: UInt16(h + 1)))
            values += [a, -a, (a + b) / 2, -(a + b) / 2]
        }
        var state: UInt64 = 0x1234_5678
        for _ in 0..<200_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32)))
        }
        return values
    }

    @Test func f32ToF16ScalarRoundsLikeSwiftFloat16() {
        var bad: [Float] = []
        for v in Self.narrowingInputs() {
            let got = lq_f32_to_f16_ref(v)
            let expected = Float16(v)
            if v.isNaN ? !Float16(bitPattern: got).isNaN : got != expected.bitPattern { bad.append(v) }
        }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5))")
    }

    /// bf16 rounding oracle: the nearer of the two truncation neighbours in exact double arithmetic, ties to even.
    func bf16Oracle(_ v: Float) -> UInt16 {
        let lo = UInt16(v.bitPattern >> 16)
        if v.isNaN { return lo | 0x40 }
        let hi = lo &+ 1
        let dl = abs(Double(Float(bitPattern: UInt32(lo) << 16)) - Double(v))
        let hiValue = Float(bitPattern: UInt32(hi) << 16)
        // Past the largest finite value IEEE rounding treats infinity as the next step, 2^128.
        let hiExact = hiValue.isInfinite ? (v < 0 ? -0x1p128 : 0x1p128) : Double(hiValue)
        let dh = hiValue.isNaN ? .infinity : abs(hiExact - Double(v))
        if dl < dh { return lo }
        if dh < dl { return hi }
        return lo & 1 == 0 ? lo : hi
    }

    @Test func f32ToBf16ScalarRoundsToNearestEven() {
        var bad: [Float] = []
        for v in Self.narrowingInputs() where v.isFinite || v.isNaN {
            let got = lq_f32_to_bf16_ref(v)
            let ok = v.isNaN ? Float(bitPattern: UInt32(got) << 16).isNaN : got == bf16Oracle(v)
            if !ok { bad.append(v) }
        }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5))")
    }

    @Test(arguments: [0, 1, 7, 8, 15, 16, 17, 31, 33, 1003, 65_537])
    func simdNarrowingMatchesScalarAtAwkwardSizes(n: Int) {
        let inputs = Array(Self.narrowingInputs().prefix(n))
        for narrow in [lq_f32_to_f16_level, lq_f32_to_bf16_level] {
            var scalar = [UInt16](repeating: 0, count: n), simd = [UInt16](repeating: 1, count: n)
            narrow(LQ_LEVEL_SCALAR, inputs, &scalar, n)
            narrow(Self.simdLevel, inputs, &simd, n)
            #expect(scalar == simd)
        }
    }

    /// The clamping lq_set_level applies, checked without changing the process-wide level that
    /// tests running beside this one use.
    @Test func levelOverrideIsClampedToTheCPU() {
        #expect(lq_clamp_level(LQ_LEVEL_SCALAR) == LQ_LEVEL_SCALAR)
        #expect(lq_clamp_level(lq_best_level()) == lq_best_level())
        #if arch(x86_64)
        #expect(lq_clamp_level(LQ_LEVEL_NEON) == LQ_LEVEL_SCALAR)
        #endif
    }
}
