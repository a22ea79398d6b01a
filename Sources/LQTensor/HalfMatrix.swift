import CKernels

/// A row-major matrix of 16-bit floats (bfloat16 or IEEE half) kept as the checkpoint stores it,
/// usually a view of the memory-mapped file: half the memory of fp32 and no load-time conversion.
/// Products widen the weights to fp32 exactly, in registers (GEMV, for decoding) or one cache-sized
/// panel at a time (GEMM), so they compute what the fp32 matrix would, up to summation order.
public final class HalfMatrix: @unchecked Sendable {
    public enum Kind: Sendable { case bf16, f16 }

    public let kind: Kind
    public let rows: Int
    public let cols: Int
    private let storage: TensorStorage
    private let bits: UnsafePointer<UInt16>

    /// Wraps `storage` (at least rows · cols 16-bit values, 2-byte aligned; an mmap'd file stays
    /// mapped while this matrix lives).
    public init(kind: Kind, rows: Int, cols: Int, storage: TensorStorage) {
        precondition(storage.byteCount >= rows * cols * 2 && Int(bitPattern: storage.base) % 2 == 0,
                     "16-bit matrix \(rows)x\(cols) does not fit its storage")
        self.kind = kind
        self.rows = rows
        self.cols = cols
        self.storage = storage
        bits = UnsafePointer(storage.base.assumingMemoryBound(to: UInt16.self))
    }

    /// A copy of `raw` (rows · cols values, any alignment).
    public convenience init(kind: Kind, rows: Int, cols: Int, copying raw: UnsafeRawBufferPointer) {
        let storage = TensorStorage(byteCount: rows * cols * 2, zeroed: false)
        if let src = raw.baseAddress { storage.base.copyMemory(from: src, byteCount: rows * cols * 2) }
        self.init(kind: kind, rows: rows, cols: cols, storage: storage)
    }

    private var isBF16: Int32 { kind == .bf16 ? 1 : 0 }

    /// Rows `range` as fp32 into `out` (row-major).
    public func widen(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let src = bits + range.lowerBound * cols, n = range.count * cols
        if kind == .bf16 { lq_bf16_to_f32(src, out, n) } else { lq_f16_to_f32(src, out, n) }
    }

    /// y = W · x (x: cols, y: rows), parallel over rows; `level` picks the kernel (tests compare them).
    public func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, level: lq_level = lq_active_level()) {
        let flag = isBF16
        // Chunks of at least 64K weights: the pool's spinning workers start within a microsecond, so
        // even a decoding step's 576×576 products split across cores.
        Parallel.forEach(rows, minChunk: max(1, (1 << 16) / max(cols, 1))) { range in
            lq_gemv16_level(level, flag, self.bits, Int64(self.cols), Int64(range.lowerBound), Int64(range.upperBound), x, y)
        }
    }

    /// X · Wᵀ for X [n, cols] → [n, rows]: one fused GEMV per row of X for decoding (up to
    /// RowPanels.gemvRowLimit rows), widened panels feeding sgemm otherwise.
    public func matmul(_ x: Tensor) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let n = x.shape[0]
        let out = Tensor(uninitialized: [n, rows])
        if n <= RowPanels.gemvRowLimit {
            for i in 0..<n { gemv(x.pointer + i * cols, out.pointer + i * rows) }
        } else {
            RowPanels.product(x, into: out, rows: rows, cols: cols) { range, panel in self.widen(rows: range, into: panel) }
        }
        return out
    }

    /// dX += dY · W for dY [n, rows] and dX [n, cols] (the input gradient through this frozen weight).
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor) {
        precondition(dy.rank == 2 && dy.shape[1] == rows && dx.shape == [dy.shape[0], cols],
                     "dY \(dy.shape) · W [\(rows), \(cols)] into \(dx.shape)")
        RowPanels.accumulateTransposedProduct(dy, into: dx, rows: rows, cols: cols) { range, panel in self.widen(rows: range, into: panel) }
    }
}
