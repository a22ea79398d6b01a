/// GPTQ's min-max quantizer to 2^bits uniform levels with a zero point, as AutoGPTQ's
/// quantizer.py computes it in fp32, one output row at a time: the range always includes 0
/// (xmin = min(min, 0), xmax = max(max, 0)); symmetric: xmax = max(|xmin|, xmax), xmin = −xmax when
/// xmin < 0, zero = (maxq+1)/2; asymmetric: zero = round(−xmin/scale); scale = (xmax − xmin)/maxq;
/// an all-zero range becomes (−1, +1). q = clamp(round(x/scale) + zero, 0, maxq), x̂ = scale·(q − zero).
/// Rounding is to nearest even, as torch.round.
public struct UniformQuantizer: Sendable, Equatable {
    public let bits: Int
    public let symmetric: Bool

    public init(bits: Int, symmetric: Bool) {
        precondition([2, 3, 4, 8].contains(bits), "uniform quantization takes 2, 3, 4 or 8 bits")
        self.bits = bits
        self.symmetric = symmetric
    }

    /// The largest code, 2^bits − 1.
    public var maxq: Float { Float((1 << bits) - 1) }

    /// One row's scale and zero point over its values `x`.
    public func parameters(min lo: Float, max hi: Float) -> (scale: Float, zero: Float) {
        var xmin = Swift.min(lo, 0), xmax = Swift.max(hi, 0)
        if symmetric {
            xmax = Swift.max(abs(xmin), xmax)
            if xmin < 0 { xmin = -xmax }
        }
        if xmin == 0 && xmax == 0 {
            xmin = -1
            xmax = 1
        }
        let scale = (xmax - xmin) / maxq
        let zero = symmetric ? (maxq + 1) / 2 : (-xmin / scale).rounded(.toNearestOrEven)
        return (scale, zero)
    }

    /// The code of x: clamp(round(x/scale) + zero, 0, maxq).
    @inline(__always)
    public func code(_ x: Float, scale: Float, zero: Float) -> Float {
        Swift.min(Swift.max((x / scale).rounded(.toNearestOrEven) + zero, 0), maxq)
    }

    /// x quantized and dequantized: scale·(code − zero).
    @inline(__always)
    public func roundTrip(_ x: Float, scale: Float, zero: Float) -> Float {
        scale * (code(x, scale: scale, zero: zero) - zero)
    }
}

/// A uniform-integer quantization of a weight [out, in] in GPTQ's terms: per group of input columns
/// (all of them when not grouped) a scale and zero point per output row; `groupIndex[c]` is the group
/// of input column c (not monotone after act-order).
public struct UniformQuantization: Sendable {
    public let quantizer: UniformQuantizer
    public let rows: Int, cols: Int
    /// Columns per group (cols when the whole row is one group).
    public let groupSize: Int
    public var codes: [UInt8] { didSet { deviceCopy = DeviceCopy() } }   // [rows, cols]
    public var scales: [Float] { didSet { deviceCopy = DeviceCopy() } }   // [groups, rows]
    /// [groups, rows]: integers for GPTQ and RTN, fractional for L4Q's learned offsets.
    public var zeros: [Float] { didSet { deviceCopy = DeviceCopy() } }
    public var groupIndex: [Int32] {  // [cols]
        didSet {
            sequentialGroups = Self.isSequential(groupIndex, groupSize)
            deviceCopy = DeviceCopy()
        }
    }
    /// Whether every column's group is its index / groupSize (no act-order permutation): the SIMD kernels' case.
    public private(set) var sequentialGroups: Bool
    /// Its copy on the GPU when products run there, shared by copies of this value until one of
    /// them changes its numbers (which then gets a fresh one).
    private(set) var deviceCopy = DeviceCopy()

    static func isSequential(_ groupIndex: [Int32], _ groupSize: Int) -> Bool {
        groupIndex.indices.allSatisfy { Int(groupIndex[$0]) == $0 / groupSize }
    }

    public var groupCount: Int { scales.count / rows }

    public init(quantizer: UniformQuantizer, rows: Int, cols: Int, groupSize: Int, codes: [UInt8], scales: [Float], zeros: [Float],
                groupIndex: [Int32]) {
        let groups = (cols + groupSize - 1) / groupSize
        precondition(codes.count == rows * cols && scales.count == groups * rows && zeros.count == scales.count && groupIndex.count == cols,
                     "a uniform quantization of [\(rows), \(cols)] in groups of \(groupSize) has mismatched parts")
        self.quantizer = quantizer
        self.rows = rows
        self.cols = cols
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.zeros = zeros
        self.groupIndex = groupIndex
        sequentialGroups = Self.isSequential(groupIndex, groupSize)
    }

    /// Round to nearest (RTN): the quantizer alone, per row or per group of `groupSize` columns.
    public static func roundToNearest(_ w: UnsafePointer<Float>, rows: Int, cols: Int, quantizer: UniformQuantizer,
                                      groupSize: Int?) -> UniformQuantization {
        let gs = groupSize ?? cols
        let groups = (cols + gs - 1) / gs
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: groups * rows), zeros = scales
        for g in 0..<groups {
            let c0 = g * gs, c1 = Swift.min(cols, c0 + gs)
            for r in 0..<rows {
                let row = w + r * cols
                var lo = row[c0], hi = row[c0]
                for c in c0..<c1 { lo = Swift.min(lo, row[c]); hi = Swift.max(hi, row[c]) }
                let (s, z) = quantizer.parameters(min: lo, max: hi)
                scales[g * rows + r] = s
                zeros[g * rows + r] = z
                for c in c0..<c1 { codes[r * cols + c] = UInt8(quantizer.code(row[c], scale: s, zero: z)) }
            }
        }
        return UniformQuantization(quantizer: quantizer, rows: rows, cols: cols, groupSize: gs, codes: codes, scales: scales,
                                   zeros: zeros, groupIndex: (0..<cols).map { Int32($0 / gs) })
    }
}
