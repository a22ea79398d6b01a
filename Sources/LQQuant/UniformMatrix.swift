import CKernels
import LQTensor

extension UniformQuantization {
    /// The kernels' view of this matrix, for the duration of `body`: the g_idx only after act-order
    /// (sequential groups take the SIMD paths).
    func withKernelView<R>(_ body: (UnsafePointer<lq_uniform>) -> R) -> R {
        codes.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { s in
                zeros.withUnsafeBufferPointer { z in
                    groupIndex.withUnsafeBufferPointer { g in
                        var m = lq_uniform(codes: q.baseAddress, scales: s.baseAddress, zeros: z.baseAddress, rows: Int64(rows), cols: Int64(cols),
                                           group: Int64(groupSize), g_idx: sequentialGroups ? nil : g.baseAddress)
                        return body(&m)
                    }
                }
            }
        }
    }

    /// Rows `range` of the dequantized weight into `out` [range.count, cols], row-major: the C
    /// kernels, bit-equal to their scalar reference (which alone reads act-order's g_idx).
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        withKernelView { lq_uniform_dequantize($0, Int64(range.lowerBound), Int64(range.upperBound), out) }
    }

    /// The whole dequantized weight [rows, cols] (tests, merging, exports: one matrix at a time).
    public func dequantized() -> Tensor {
        let out = Tensor(uninitialized: [rows, cols])
        dequantize(rows: 0..<rows, into: out.pointer)
        return out
    }

    /// X · Wᵀ for X [n, cols] → [n, rows]: up to RowPanels.gemvRowLimit rows through the fused GEMV
    /// (decoding; rows of W split over threads, each row summed the same way whatever the split),
    /// more by dequantizing cache-sized panels of W feeding sgemm.
    public func matmul(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let out = Tensor(uninitialized: [x.shape[0], rows])
        if x.shape[0] <= RowPanels.gemvRowLimit && sequentialGroups {
            withKernelView { m in
                for i in 0..<x.shape[0] {
                    let xi = x.pointer + i * cols, yi = out.pointer + i * rows
                    Parallel.forEach(rows, minChunk: 64) { r in lq_uniform_gemv(m, Int64(r.lowerBound), Int64(r.upperBound), xi, yi) }
                }
            }
            return out
        }
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
