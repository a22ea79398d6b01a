import CBLAS
import CKernels

/// OpenBLAS runs single-threaded, and large products are split here into tiles fixed by their
/// shape alone, which run on our pool. OpenBLAS's rounding depends on how it splits a product
/// (between 1 and 2 threads 5-70% of sgemm outputs differ on this machine's 256³ to 512×1536×576
/// products), so its own threading would make every result depend on the thread count; with
/// tiles fixed by shape the same command gives the same bytes on any number of cores.
enum BLASTiling {
    /// Products below this many multiply-adds run as one call.
    static let minWork = 1 << 21
    /// Tile sizes: rows of C when op(A) is the taller side, columns of C otherwise.
    static let rows = 64, cols = 256
    /// gemv: rows (or columns, transposed) of A per tile above this many elements.
    static let gemvMinWork = 1 << 18, gemvTile = 256

    /// Set once before the first BLAS call (a lazy global, so a library caller needs no setup).
    static let singleThreaded: Void = openblas_set_num_threads(1)
}

/// C = alpha · op(A) · op(B) + beta · C through `cblas_sgemm`, on strided row-major views.
public func gemm(_ a: MatrixRef, transposeA: Bool = false, _ b: MatrixRef, transposeB: Bool = false,
                 into c: MatrixRef, alpha: Float = 1, beta: Float = 0) {
    let m = transposeA ? a.cols : a.rows
    let k = transposeA ? a.rows : a.cols
    let kb = transposeB ? b.cols : b.rows
    let n = transposeB ? b.rows : b.cols
    precondition(k == kb && c.rows == m && c.cols == n,
                 "gemm shapes: op(A) \(m)x\(k), op(B) \(kb)x\(n), C \(c.rows)x\(c.cols)")
    if m == 0 || n == 0 { return }
    _ = BLASTiling.singleThreaded
    func call(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ m: Int, _ n: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(a_ld), b, Int32(b_ld), beta, c, Int32(c_ld))
    }
    let a_ld = a.ld, b_ld = b.ld, c_ld = c.ld
    if m * n * k < BLASTiling.minWork || (m <= BLASTiling.rows && n <= BLASTiling.cols) {
        call(a.base, b.base, c.base, m, n)
    } else if m >= n {
        let tile = BLASTiling.rows
        Parallel.forTasks((m + tile - 1) / tile) { t in
            let r0 = t * tile, rows = min(tile, m - r0)
            // Row r of op(A) is row r of A, or column r of A when transposed.
            call(a.base + (transposeA ? r0 : r0 * a_ld), b.base, c.base + r0 * c_ld, rows, n)
        }
    } else {
        let tile = BLASTiling.cols
        Parallel.forTasks((n + tile - 1) / tile) { t in
            let c0 = t * tile, cols = min(tile, n - c0)
            // Column j of op(B) is column j of B, or row j of B when transposed.
            call(a.base, b.base + (transposeB ? c0 * b_ld : c0), c.base + c0, m, cols)
        }
    }
}

/// y = alpha · op(A) · x + beta · y through `cblas_sgemv`, tiled over y as `gemm` is over C.
public func gemv(_ a: MatrixRef, transpose: Bool = false, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                 alpha: Float = 1, beta: Float = 0) {
    if a.rows == 0 || a.cols == 0 { return }
    _ = BLASTiling.singleThreaded
    let outputs = transpose ? a.cols : a.rows, tile = BLASTiling.gemvTile
    if a.rows * a.cols < BLASTiling.gemvMinWork || outputs <= tile {
        cblas_sgemv(CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(a.rows), Int32(a.cols),
                    alpha, a.base, Int32(a.ld), x, 1, beta, y, 1)
        return
    }
    let base = a.base, ld = a.ld, rows = a.rows, cols = a.cols
    Parallel.forTasks((outputs + tile - 1) / tile) { t in
        let o0 = t * tile, count = min(tile, outputs - o0)
        if transpose {
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(rows), Int32(count), alpha, base + o0, Int32(ld), x, 1, beta, y + o0, 1)
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(count), Int32(cols), alpha, base + o0 * ld, Int32(ld), x, 1, beta, y + o0, 1)
        }
    }
}

/// op(A) · op(B) as a new tensor.
public func matmul(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false) -> Tensor {
    let m = transposeA ? a.shape[1] : a.shape[0]
    let n = transposeB ? b.shape[0] : b.shape[1]
    let k = transposeA ? a.shape[0] : a.shape[1]
    let c = k == 0 ? Tensor(zeros: [m, n]) : Tensor(uninitialized: [m, n])  // sgemm with beta = 0 writes every element
    gemm(a.matrix, transposeA: transposeA, b.matrix, transposeB: transposeB, into: c.matrix)
    return c
}

/// OpenBLAS's own thread count: 1 for every product of ours (see `BLASTiling`).
public enum BLASThreads {
    public static var count: Int {
        _ = BLASTiling.singleThreaded
        return Int(openblas_get_num_threads())
    }
}

/// OpenBLAS itself on the whole product with `threads` threads, as benchmark anchors: the library at
/// its best, beside our tiled calls. Never for results (its rounding depends on `threads`).
public enum OpenBLASAnchor {
    public static func gemm(_ a: MatrixRef, _ b: MatrixRef, transposeB: Bool = false, into c: MatrixRef, threads: Int) {
        withThreads(threads) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(c.rows), Int32(c.cols), Int32(a.cols),
                        1, a.base, Int32(a.ld), b.base, Int32(b.ld), 0, c.base, Int32(c.ld))
        }
    }

    public static func gemv(_ a: MatrixRef, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        withThreads(threads) { cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(a.rows), Int32(a.cols), 1, a.base, Int32(a.ld), x, 1, 0, y, 1) }
    }

    static func withThreads(_ n: Int, _ body: () -> Void) {
        _ = BLASTiling.singleThreaded
        openblas_set_num_threads(Int32(max(1, n)))
        defer { openblas_set_num_threads(1) }
        body()
    }
}
