import LQTensor

extension UniformQuantization {
    /// Whether every column's group is its index / groupSize (no act-order permutation), so rows
    /// dequantize a group at a time.
    public var hasSequentialGroups: Bool {
        groupIndex.indices.allSatisfy { Int(groupIndex[$0]) == $0 / groupSize }
    }

    /// Rows `range` of the dequantized weight into `out` [range.count, cols], row-major.
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let sequential = hasSequentialGroups
        codes.withUnsafeBufferPointer { codes in
            scales.withUnsafeBufferPointer { scales in
                zeros.withUnsafeBufferPointer { zeros in
                    groupIndex.withUnsafeBufferPointer { gIdx in
                        for r in range {
                            let src = codes.baseAddress! + r * cols, dst = out + (r - range.lowerBound) * cols
                            if sequential {
                                for g in 0..<groupCount {
                                    let s = scales[g * rows + r], z = zeros[g * rows + r]
                                    for c in (g * groupSize)..<min(cols, (g + 1) * groupSize) { dst[c] = s * (Float(src[c]) - z) }
                                }
                            } else {
                                for c in 0..<cols {
                                    let g = Int(gIdx[c]) * rows + r
                                    dst[c] = scales[g] * (Float(src[c]) - zeros[g])
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The whole dequantized weight [rows, cols] (tests, merging, exports: one matrix at a time).
    public func dequantized() -> Tensor {
        let out = Tensor(uninitialized: [rows, cols])
        dequantize(rows: 0..<rows, into: out.pointer)
        return out
    }

    /// X · Wᵀ for X [n, cols] → [n, rows], dequantizing cache-sized panels of W feeding sgemm.
    public func matmul(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let out = Tensor(uninitialized: [x.shape[0], rows])
        RowPanels.product(x, into: out, rows: rows, cols: cols) { range, panel in self.dequantize(rows: range, into: panel) }
        return out
    }

    /// dX += dY · W for dY [n, rows] and dX [n, cols].
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor) {
        precondition(dy.rank == 2 && dy.shape[1] == rows && dx.shape == [dy.shape[0], cols], "dY \(dy.shape) · W [\(rows), \(cols)] into \(dx.shape)")
        RowPanels.accumulateTransposedProduct(dy, into: dx, rows: rows, cols: cols) { range, panel in self.dequantize(rows: range, into: panel) }
    }

    /// The same quantization with every scale rounded to fp16, as a GPTQ checkpoint stores it.
    public func withHalfScales() -> UniformQuantization {
        var q = self
        q.scales = scales.map { Float(Float16($0)) }
        return q
    }

    /// ‖Ŵ − W‖_F / ‖W‖_F against the original weight.
    public func relativeError(to w: Tensor) -> Double {
        let d = dequantized()
        var num = 0.0, den = 0.0
        for i in 0..<d.count {
            let e = Double(d.pointer[i]) - Double(w.pointer[i])
            num += e * e
            den += Double(w.pointer[i]) * Double(w.pointer[i])
        }
        return (num / max(den, .leastNormalMagnitude)).squareRoot()
    }
}
