import LQTensor

/// The largest |a − b| over two tensors of the same element count; infinity when the counts differ,
/// so that a shape mismatch fails the comparison instead of comparing a prefix.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.count == b.count else { return .infinity }
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.pointer[i] - b.pointer[i])) }
    return m
}
