import CKernels
import LQTensor

extension UniformQuantization: DeviceResident {
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

    func upload(to gpu: CUDABackend) -> (OpaquePointer?, String?) { withKernelView { gpu.upload($0) } }

    var deviceName: String {
        "a \(rows)x\(cols) \(quantizer.bits)-bit uniform matrix (groups of \(groupSize)\(sequentialGroups ? "" : ", act-order"))"
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

    /// X · Wᵀ for X [n, cols] → [n, rows]: on `gpu` when given (default: the process's active
    /// backend) and the matrix is there; else up to RowPanels.gemvRowLimit rows through the fused
    /// GEMV (decoding; rows of W split over threads, each row summed the same way whatever the
    /// split; after act-order the scalar GEMV reading g_idx), more by dequantizing cache-sized
    /// panels of W feeding sgemm.
    public func matmul(_ x: Tensor, gpu: CUDABackend? = CUDABackend.active) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let n = x.shape[0]
        let out = Tensor(uninitialized: [n, rows])
        if n > 0, let gpu, onDevice(gpu, { m in gpu.matmul(m, x: x.pointer, rows: n, transposed: false, beta: 0, y: out.pointer) }) {
            return out
        }
        if n <= RowPanels.gemvRowLimit {  // act-order too: the scalar GEMV reads g_idx per column
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

    /// dX += dY · W for dY [n, rows] and dX [n, cols] (on `gpu` as for matmul).
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor, gpu: CUDABackend? = CUDABackend.active) {
        precondition(dy.rank == 2 && dy.shape[1] == rows && dx.shape == [dy.shape[0], cols], "dY \(dy.shape) · W [\(rows), \(cols)] into \(dx.shape)")
        let n = dy.shape[0]
        if n > 0, let gpu, onDevice(gpu, { m in gpu.matmul(m, x: dy.pointer, rows: n, transposed: true, beta: 1, y: dx.pointer) }) {
            return
        }
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
