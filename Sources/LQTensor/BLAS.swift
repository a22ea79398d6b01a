import CBLAS
import CKernels

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
    // A product big enough for OpenBLAS to use its threads: our spinning workers would slow them.
    if m * n * k >= 1 << 20 && BLASThreads.count > 1 { lq_pool_rest() }
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a.base, Int32(a.ld), b.base, Int32(b.ld), beta, c.base, Int32(c.ld))
}

/// y = alpha · op(A) · x + beta · y through `cblas_sgemv`.
public func gemv(_ a: MatrixRef, transpose: Bool = false, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                 alpha: Float = 1, beta: Float = 0) {
    if a.rows == 0 || a.cols == 0 { return }
    cblas_sgemv(CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(a.rows), Int32(a.cols),
                alpha, a.base, Int32(a.ld), x, 1, beta, y, 1)
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

/// The OpenBLAS thread pool size. Set deliberately (see `Parallel`): BLAS threads and our own
/// parallel loops must not oversubscribe the cores.
public enum BLASThreads {
    public static var count: Int { Int(openblas_get_num_threads()) }
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    /// Runs `body` with OpenBLAS limited to `n` threads, then restores the previous count.
    public static func with<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        let previous = count
        set(n)
        defer { set(previous) }
        return try body()
    }
}
