import Foundation

/// A seedable generator (xoshiro256**, seeded through SplitMix64) so that randomized
/// algorithms and tests are reproducible; Swift's system generator cannot be seeded.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= Self.golden
            return Self.mix(x)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    private static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// SplitMix64's finalizer.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The stream of one cell of a grid of streams (run seed, matrix, step, chunk, …): the keys are
    /// folded in one at a time, h ← mix((h ⊕ key) + golden) with SplitMix64's finalizer and constant,
    /// from h = 0, and h seeds the generator. A stream found by its keys needs no checkpoint state.
    public init(keys: [UInt64]) {
        self.init(seed: keys.reduce(0) { h, key in Self.mix((h ^ key) &+ Self.golden) })
    }

    /// The generator's four words, for checkpoints that must resume the same stream.
    public var state: [UInt64] {
        get { [s.0, s.1, s.2, s.3] }
        set {
            precondition(newValue.count == 4, "a generator state is four words")
            s = (newValue[0], newValue[1], newValue[2], newValue[3])
        }
    }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(s.1 &* 5, 7) &* 9
        Self.transition(&s)
        return result
    }

    /// xoshiro256's state update: shifts, rotations and exclusive ors, so linear over GF(2).
    @inline(__always)
    private static func transition(_ s: inout (UInt64, UInt64, UInt64, UInt64)) {
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
    }

    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// The generator as if `next()` had been called `n` times, in O(log n): the state update is a
    /// 256×256 matrix T over GF(2), and the state is multiplied by T^(2^k) for each bit k set in n.
    /// (A data-parallel rank jumps over the dropout draws of the micro-batches other ranks run.)
    public mutating func advance(by n: UInt64) {
        var v = SIMD4(s.0, s.1, s.2, s.3)
        for k in 0..<64 where n >> UInt64(k) & 1 == 1 { v = Self.transitionPowers[k].apply(v) }
        s = (v[0], v[1], v[2], v[3])
    }

    /// A linear map of GF(2)^256 (a state: four words, bit j in word j / 64) by its 256 columns.
    private struct BitMatrix {
        let columns: [SIMD4<UInt64>]

        func apply(_ v: SIMD4<UInt64>) -> SIMD4<UInt64> {
            var out = SIMD4<UInt64>(repeating: 0)
            for j in 0..<256 where v[j >> 6] >> UInt64(j & 63) & 1 == 1 { out ^= columns[j] }
            return out
        }
    }

    /// T^(2^k) for k = 0..<64: T's columns are the update of each unit state, then squared.
    private static let transitionPowers: [BitMatrix] = {
        var m = BitMatrix(columns: (0..<256).map { j in
            var unit = SIMD4<UInt64>(repeating: 0)
            unit[j >> 6] = 1 << UInt64(j & 63)
            var s = (unit[0], unit[1], unit[2], unit[3])
            transition(&s)
            return SIMD4(s.0, s.1, s.2, s.3)
        })
        var powers = [m]
        for _ in 1..<64 {
            m = BitMatrix(columns: m.columns.map(m.apply))
            powers.append(m)
        }
        return powers
    }()

    /// A standard normal sample (Box–Muller).
    public mutating func nextGaussian() -> Float {
        let u1 = Double(next() >> 11 | 1) * 0x1p-53  // (0, 1]
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

extension Tensor {
    /// A tensor of independent standard normal samples.
    public static func gaussian(_ shape: [Int], using rng: inout SeededGenerator, scale: Float = 1) -> Tensor {
        let t = Tensor(zeros: shape)
        for i in 0..<t.count { t.pointer[i] = rng.nextGaussian() * scale }
        return t
    }
}
