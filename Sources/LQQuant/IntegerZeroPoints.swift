import LQTensor

/// A quantization with fractional zero points (L4Q's learned offsets, stored by lqlora's layout)
/// moved onto the integer zero points GPTQ's packed qzeros hold.
extension UniformQuantization {
    /// As lqlora's layout reads it back: fp16 scales and fp16 zero points.
    public func withHalfScalesAndZeros() -> UniformQuantization {
        var q = withHalfScales()
        q.zeros = zeros.map { Float(Float16($0)) }
        return q
    }

    /// Each zero point z becomes z̃, the nearest integer in `allowed`, and each code c becomes
    /// k = clamp(round(c − z + z̃), 0, maxq): of the levels s·(k − z̃) the one nearest the value
    /// s·(c − z) this quantization computes. The target is that value, the weight the trained loss
    /// was computed with, and not W′ before quantization: each weight then moves by s·|z − z̃| ≤ s/2
    /// (more only where z̃ was clamped), the least any code can, where requantizing W′ on the new
    /// grid would move some by up to s. The scales stay as they are.
    public func withIntegerZeros(in allowed: ClosedRange<Int>) -> (quantization: UniformQuantization, rounding: ZeroPointRounding) {
        let lo = Float(allowed.lowerBound), hi = Float(allowed.upperBound), top = quantizer.maxq
        var moved = self, clamped = 0
        moved.zeros = zeros.map { z in
            let nearest = z.rounded(.toNearestOrEven)
            if nearest < lo || nearest > hi { clamped += 1 }
            return Swift.min(Swift.max(nearest, lo), hi)
        }
        moved.codes = codes.indices.map { e in
            let (r, c) = e.quotientAndRemainder(dividingBy: cols)
            let g = Int(groupIndex[c]) * rows + r
            let level = (Float(codes[e]) - zeros[g] + moved.zeros[g]).rounded(.toNearestOrEven)
            return UInt8(Swift.min(Swift.max(level, 0), top))
        }
        let rounding = ZeroPointRounding(allowed: allowed, change: WeightChange(from: dequantized(), to: moved.dequantized()),
                                         zeroPoints: zeros.count, clampedZeros: clamped)
        return (moved, rounding)
    }
}

/// How far a set of dequantized weights moved: the largest and the RMS change, and ‖ΔW‖_F/‖W‖_F
/// against the weights it moved from. The sums add, so one value also describes a whole model.
public struct WeightChange: Sendable, Equatable {
    public private(set) var maxAbs = 0.0, sumOfSquares = 0.0, referenceSumOfSquares = 0.0, count = 0

    public init() {}

    public init(from reference: Tensor, to moved: Tensor) {
        precondition(reference.shape == moved.shape, "comparing weights of shapes \(reference.shape) and \(moved.shape)")
        for i in 0..<reference.count {
            let w = Double(reference.pointer[i]), d = Double(moved.pointer[i]) - w
            maxAbs = max(maxAbs, abs(d))
            sumOfSquares += d * d
            referenceSumOfSquares += w * w
        }
        count = reference.count
    }

    public mutating func add(_ other: WeightChange) {
        maxAbs = max(maxAbs, other.maxAbs)
        sumOfSquares += other.sumOfSquares
        referenceSumOfSquares += other.referenceSumOfSquares
        count += other.count
    }

    public var rms: Double { count == 0 ? 0 : (sumOfSquares / Double(count)).squareRoot() }
    public var relative: Double { referenceSumOfSquares == 0 ? 0 : (sumOfSquares / referenceSumOfSquares).squareRoot() }
}

/// What rounding the zero points to integers in `allowed` did to one matrix or, added up, to a model.
public struct ZeroPointRounding: Sendable, Equatable {
    public let allowed: ClosedRange<Int>
    public private(set) var change = WeightChange()
    /// Zero points (groups × rows), and those whose nearest integer was outside `allowed`.
    public private(set) var zeroPoints = 0, clampedZeros = 0

    public init(allowed: ClosedRange<Int>, change: WeightChange = WeightChange(), zeroPoints: Int = 0, clampedZeros: Int = 0) {
        self.allowed = allowed
        self.change = change
        self.zeroPoints = zeroPoints
        self.clampedZeros = clampedZeros
    }

    public mutating func add(_ other: ZeroPointRounding) {
        precondition(other.allowed == allowed, "adding zero-point roundings into \(other.allowed) and \(allowed)")
        change.add(other.change)
        zeroPoints += other.zeroPoints
        clampedZeros += other.clampedZeros
    }

    /// quant_report.json's entry.
    public var json: [String: Any] {
        ["max_abs_change": change.maxAbs, "rms_change": change.rms, "relative_change": change.relative, "zero_points": zeroPoints,
         "zero_points_clamped": clampedZeros, "zero_point_range": [allowed.lowerBound, allowed.upperBound]]
    }
}
