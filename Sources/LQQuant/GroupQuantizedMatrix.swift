import LQTensor

/// A matrix [rows, cols] as Q-GaLore keeps its weights and projections: 4- or 8-bit asymmetric
/// codes in groups of `groupSize` consecutive values of the row-major layout (a group may run on
/// into the next row, as the reference's `reshape(-1, group_size)` makes it; a last group may be
/// shorter), each group with an fp32 scale and an integer zero point:
///   lo = min(min, 0), hi = max(max, 0), scale = max(hi − lo, 1e-5)/maxq, zero = clamp(−round(lo/scale), 0, maxq),
///   code = clamp(round(w/scale) + zero, 0, maxq), ŵ = (code − zero)·scale.
/// The reference (q_galore_projector.py / q_galore_adamw8bit.py `_quantize`) takes lo = min and
/// hi = max, so a group of one sign gets a negative zero point clamped to 0 and loses the top of
/// its range; including 0 keeps every value representable and changes nothing for a group of both signs.
/// A class: the optimizer requantizes it in place after each update while the model computes with it.
public final class GroupQuantizedMatrix: @unchecked Sendable {
    public let rows: Int, cols: Int
    public let bits: Int, groupSize: Int
    /// One byte per code at 8 bits; two codes per byte at 4 bits (the even index in the low nibble).
    public private(set) var codes: [UInt8]
    public private(set) var scales: [Float], zeros: [Float]

    /// How values become codes: to nearest (half to even, as torch.round), or stochastically
    /// (floor(w/scale) + 1 with probability equal to its fraction) from a seeded stream.
    public enum Rounding: Sendable, Equatable {
        case nearest
        /// One uniform per value, in order, from a stream per chunk (`chunkValues`): chunk c's from
        /// `SeededGenerator(keys: keys + [c])`, so the codes do not depend on the thread count and a
        /// resumed run draws the same numbers from the same keys.
        case stochastic(keys: [UInt64])
    }

    /// Values per random stream in stochastic rounding: the whole groups within 16,384 values (at
    /// least one group).
    public var chunkValues: Int { max(1, 16384 / groupSize) * groupSize }
    /// The smallest range a group's scale spans (the reference's `clamp(min=1e-5)`).
    public static let minimumRange: Float = 1e-5

    public var count: Int { rows * cols }
    public var groupCount: Int { (count + groupSize - 1) / groupSize }
    var quantizer: UniformQuantizer { UniformQuantizer(bits: bits, symmetric: false) }
    /// Bytes held: codes plus two fp32 numbers per group.
    public var storageBytes: Int { codes.count + 8 * groupCount }

    /// `w` [rows, cols] quantized.
    public init(_ w: UnsafePointer<Float>, rows: Int, cols: Int, bits: Int, groupSize: Int, rounding: Rounding = .nearest) {
        precondition(bits == 4 || bits == 8, "group codes are 4 or 8 bits")
        precondition(groupSize > 0 && groupSize % 2 == 0 && rows * cols > 0, "a group-quantized matrix needs values and an even group size")
        self.rows = rows
        self.cols = cols
        self.bits = bits
        self.groupSize = groupSize
        let n = rows * cols, groups = (n + groupSize - 1) / groupSize
        codes = [UInt8](repeating: 0, count: bits == 8 ? n : (n + 1) / 2)
        scales = [Float](repeating: 0, count: groups)
        zeros = scales
        quantize(w, rounding: rounding)
    }

    /// Restores stored parts (a checkpoint's), checked against the shape.
    public init(rows: Int, cols: Int, bits: Int, groupSize: Int, codes: [UInt8], scales: [Float], zeros: [Float]) {
        let n = rows * cols, groups = (n + groupSize - 1) / groupSize
        precondition((bits == 4 || bits == 8) && codes.count == (bits == 8 ? n : (n + 1) / 2) && scales.count == groups && zeros.count == groups,
                     "group-quantized parts do not fit [\(rows), \(cols)] at \(bits) bits in groups of \(groupSize)")
        self.rows = rows
        self.cols = cols
        self.bits = bits
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.zeros = zeros
    }

    /// Puts back stored parts (a checkpoint's) in place, so a layer computing with this matrix sees them.
    public func restore(codes: [UInt8], scales: [Float], zeros: [Float]) {
        precondition(codes.count == self.codes.count && scales.count == groupCount && zeros.count == groupCount,
                     "group-quantized parts do not fit [\(rows), \(cols)] at \(bits) bits in groups of \(groupSize)")
        self.codes = codes
        self.scales = scales
        self.zeros = zeros
    }

    /// One group's scale and zero point from its extremes, 0 included in the range.
    public static func parameters(min lo: Float, max hi: Float, maxq: Float) -> (scale: Float, zero: Float) {
        let lo = Swift.min(lo, 0), hi = Swift.max(hi, 0)
        let scale = Swift.max(hi - lo, minimumRange) / maxq
        let zero = Swift.min(Swift.max(-(lo / scale).rounded(.toNearestOrEven), 0), maxq)
        return (scale, zero)
    }

    /// Code i (0 ≤ i < count).
    @inline(__always)
    public func code(_ i: Int) -> Int {
        bits == 8 ? Int(codes[i]) : Int(i & 1 == 0 ? codes[i >> 1] & 0xF : codes[i >> 1] >> 4)
    }

    /// Replaces every code, scale and zero point by those of `w` [rows, cols].
    public func quantize(_ w: UnsafePointer<Float>, rounding: Rounding) {
        let n = count, gs = groupSize, q = quantizer, maxq = q.maxq, packed = bits == 4, chunk = chunkValues
        codes.withUnsafeMutableBufferPointer { codes in
            scales.withUnsafeMutableBufferPointer { scales in
                zeros.withUnsafeMutableBufferPointer { zeros in
                    // One task per chunk: whole groups, and whole bytes (an even group size).
                    Parallel.forTasks((n + chunk - 1) / chunk) { c in
                        var rng: SeededGenerator?
                        if case let .stochastic(keys) = rounding { rng = SeededGenerator(keys: keys + [UInt64(c)]) }
                        let end = min(n, (c + 1) * chunk)
                        for g0 in stride(from: c * chunk, to: end, by: gs) {
                            let g1 = min(n, g0 + gs), g = g0 / gs
                            var lo = w[g0], hi = w[g0]
                            for i in g0..<g1 { lo = Swift.min(lo, w[i]); hi = Swift.max(hi, w[i]) }
                            let (s, z) = Self.parameters(min: lo, max: hi, maxq: maxq)
                            scales[g] = s
                            zeros[g] = z
                            for i in g0..<g1 {
                                let v: Float
                                if rng != nil {
                                    let x = w[i] / s, f = x.rounded(.down)
                                    let u = Float(rng!.next() >> 40) * 0x1p-24  // uniform in [0, 1), as torch.rand
                                    v = Swift.min(Swift.max(f + (u < x - f ? 1 : 0) + z, 0), maxq)
                                } else {
                                    v = q.code(w[i], scale: s, zero: z)
                                }
                                if packed {
                                    let b = UInt8(v)
                                    codes[i >> 1] = i & 1 == 0 ? (codes[i >> 1] & 0xF0) | b : (codes[i >> 1] & 0x0F) | (b << 4)
                                } else {
                                    codes[i] = UInt8(v)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Values `range` (row-major indices) dequantized into `out`: (code − zero)·scale, a group at a time.
    public func dequantize(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let gs = groupSize, packed = bits == 4, o = out - range.lowerBound
        codes.withUnsafeBufferPointer { codes in
            var i = range.lowerBound
            while i < range.upperBound {
                let g = i / gs, end = min(range.upperBound, (g + 1) * gs), z = zeros[g], s = scales[g]
                if packed {
                    for j in i..<end { o[j] = (Float(j & 1 == 0 ? codes[j >> 1] & 0xF : codes[j >> 1] >> 4) - z) * s }
                } else {
                    for j in i..<end { o[j] = (Float(codes[j]) - z) * s }
                }
                i = end
            }
        }
    }

    /// The whole matrix dequantized [rows, cols].
    public func dequantized() -> Tensor {
        let out = Tensor(uninitialized: [rows, cols]), n = count
        Parallel.forEach(n, minChunk: 1 << 14) { r in self.dequantize(r, into: out.pointer + r.lowerBound) }
        return out
    }

    /// X · Wᵀ for X [n, cols] → [n, rows], widening row panels of W.
    public func matmul(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let out = Tensor(uninitialized: [x.shape[0], rows]), c = cols
        RowPanels.product(x, into: out, rows: rows, cols: cols) { range, panel in
            self.dequantize((range.lowerBound * c)..<(range.upperBound * c), into: panel)
        }
        return out
    }

    /// dX += dY · W for dY [n, rows] and dX [n, cols].
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor) {
        precondition(dy.rank == 2 && dy.shape[1] == rows && dx.shape == [dy.shape[0], cols], "dY \(dy.shape) · W [\(rows), \(cols)] into \(dx.shape)")
        let c = cols
        RowPanels.accumulateTransposedProduct(dy, into: dx, rows: rows, cols: cols) { range, panel in
            self.dequantize((range.lowerBound * c)..<(range.upperBound * c), into: panel)
        }
    }
}
