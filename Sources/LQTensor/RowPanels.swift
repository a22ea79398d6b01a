/// Products with a matrix kept in a compact form (quantized, 16-bit): its rows are widened to
/// fp32 one cache-sized panel at a time, each panel feeding sgemm, so no fp32 copy of the whole
/// matrix ever exists.
public enum RowPanels {
    /// Rows of x up to which a product is one fused GEMV per row (decoding) instead of panels.
    public static let gemvRowLimit = 8

    /// Calls `body` with consecutive row panels of a rows × cols matrix (and their row range):
    /// about 8 MiB each, large enough that sgemm runs near its peak, small enough to stay in cache.
    /// `widen(range, out)` writes rows `range` to `out` (row-major); it runs on all threads, each
    /// on its own rows. One buffer serves every panel.
    public static func forEach(rows: Int, cols: Int, widen: (Range<Int>, UnsafeMutablePointer<Float>) -> Void,
                               _ body: (MatrixRef, Range<Int>) -> Void) {
        let panelRows = max(1, min(rows, (1 << 21) / max(cols, 1)))
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: panelRows * cols)
        defer { buffer.deallocate() }
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + panelRows)
            let start = r0
            Parallel.forEach(r1 - r0, minChunk: 16) { range in
                widen((start + range.lowerBound)..<(start + range.upperBound), buffer + range.lowerBound * cols)
            }
            body(MatrixRef(base: buffer, rows: r1 - r0, cols: cols, ld: cols), r0..<r1)
            r0 = r1
        }
    }

    /// out = X · Wᵀ for X [n, cols] and out [n, rows].
    public static func product(_ x: Tensor, into out: Tensor, rows: Int, cols: Int,
                               widen: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let n = x.shape[0]
        let xm = x.matrix, om = out.matrix
        forEach(rows: rows, cols: cols, widen: widen) { w, r in gemm(xm, w, transposeB: true, into: om.block(rows: 0..<n, cols: r)) }
    }

    /// dX += dY · W for dY [n, rows] and dX [n, cols].
    public static func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor, rows: Int, cols: Int,
                                                   widen: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let n = dy.shape[0]
        let dym = dy.matrix, dxm = dx.matrix
        forEach(rows: rows, cols: cols, widen: widen) { w, r in gemm(dym.block(rows: 0..<n, cols: r), w, into: dxm, beta: 1) }
    }
}
