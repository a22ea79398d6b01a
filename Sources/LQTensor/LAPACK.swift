import CLAPACKE

/// A LAPACK routine reported failure (info ≠ 0).
public enum LinearAlgebraError: Error, CustomStringConvertible, Equatable {
    /// An argument was illegal (info < 0): a bug on our side, reported with the argument number.
    case illegalArgument(routine: String, argument: Int)
    /// Cholesky: the leading minor of this order is not positive definite.
    case notPositiveDefinite(order: Int)
    /// Triangular inverse: the diagonal element at this (1-based) index is exactly zero.
    case singular(index: Int)
    /// SVD: the divide-and-conquer iteration did not converge.
    case svdDidNotConverge(info: Int)
    /// Any other failure.
    case failed(routine: String, info: Int)

    public var description: String {
        switch self {
        case let .illegalArgument(routine, argument): return "\(routine): argument \(argument) is illegal"
        case let .notPositiveDefinite(order): return "matrix is not positive definite (leading minor of order \(order))"
        case let .singular(index): return "triangular matrix is singular (zero diagonal at \(index))"
        case let .svdDidNotConverge(info): return "SVD did not converge (sgesdd info \(info))"
        case let .failed(routine, info): return "\(routine) failed with info \(info)"
        }
    }
}

private func check(_ routine: String, _ info: Int32, positive: (Int) -> LinearAlgebraError) throws {
    if info < 0 { throw LinearAlgebraError.illegalArgument(routine: routine, argument: Int(-info)) }
    if info > 0 { throw positive(Int(info)) }
}

/// A thin singular value decomposition A = U · diag(S) · Vt, with k = min(m, n) and S descending.
public struct SVD {
    public let u: Tensor  // [m, k]
    public let s: [Float]  // [k]
    public let vt: Tensor  // [k, n]

    public init(u: Tensor, s: [Float], vt: Tensor) {
        self.u = u
        self.s = s
        self.vt = vt
    }

    /// U · diag(S) · Vt restricted to the first `rank` triplets.
    public func reconstruct(rank: Int? = nil) -> Tensor {
        let r = min(rank ?? s.count, s.count)
        let scaledU = u.block(rows: 0..<u.shape[0], cols: 0..<r).toTensor()
        for i in 0..<scaledU.shape[0] { for j in 0..<r { scaledU[i, j] *= s[j] } }
        let out = Tensor(zeros: [u.shape[0], vt.shape[1]])
        gemm(scaledU.matrix, vt.block(rows: 0..<r, cols: 0..<vt.shape[1]), into: out.matrix)
        return out
    }
}

/// Full thin SVD through LAPACK's divide-and-conquer `sgesdd`. `a` is not modified.
public func svd(_ a: Tensor) throws -> SVD {
    _ = BLASTiling.singleThreaded  // LAPACK calls OpenBLAS too
    precondition(a.rank == 2, "svd expects a matrix")
    let m = a.shape[0], n = a.shape[1], k = min(m, n)
    // Row-major A is column-major Aᵀ = U'·S·V'ᵀ, so A = V'·S·U'ᵀ: LAPACK's U' read row-major
    // is our Vt and its V'ᵀ read row-major is our U. No transposes needed.
    let work = a.copy()
    let u = Tensor(zeros: [m, k]), vt = Tensor(zeros: [k, n])
    var s = [Float](repeating: 0, count: k)
    if k == 0 { return SVD(u: u, s: s, vt: vt) }
    let info = s.withUnsafeMutableBufferPointer { sp in
        LAPACKE_sgesdd(LAPACK_COL_MAJOR, Int8(UInt8(ascii: "S")), Int32(n), Int32(m), work.pointer,
                       Int32(n), sp.baseAddress, vt.pointer, Int32(n), u.pointer, Int32(k))
    }
    try check("sgesdd", info) { .svdDidNotConverge(info: $0) }
    return SVD(u: u, s: s, vt: vt)
}

/// Thin QR: A [m, n] = Q [m, k] · R [k, n] with k = min(m, n), Q with orthonormal columns.
public func qr(_ a: Tensor) throws -> (q: Tensor, r: Tensor) {
    _ = BLASTiling.singleThreaded  // LAPACK calls OpenBLAS too
    precondition(a.rank == 2, "qr expects a matrix")
    let m = a.shape[0], n = a.shape[1], k = min(m, n)
    let work = a.copy()
    var tau = [Float](repeating: 0, count: max(k, 1))
    if k == 0 { return (Tensor(zeros: [m, 0]), Tensor(zeros: [0, n])) }
    try check("sgeqrf", LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, Int32(m), Int32(n), work.pointer, Int32(n), &tau)) {
        .failed(routine: "sgeqrf", info: $0)
    }
    let r = Tensor(zeros: [k, n])
    for i in 0..<k { for j in i..<n { r[i, j] = work[i, j] } }
    let q = work.block(rows: 0..<m, cols: 0..<k).toTensor()
    try check("sorgqr", LAPACKE_sorgqr(LAPACK_ROW_MAJOR, Int32(m), Int32(k), Int32(k), q.pointer, Int32(k), &tau)) {
        .failed(routine: "sorgqr", info: $0)
    }
    return (q, r)
}

/// An orthonormal basis of the column space of A (the Q of a thin QR).
public func orthonormalBasis(_ a: Tensor) throws -> Tensor { try qr(a).q }

/// Cholesky factor of a symmetric positive definite matrix: lower L with A = L·Lᵀ, or upper U with A = Uᵀ·U.
public func cholesky(_ a: Tensor, upper: Bool = false) throws -> Tensor {
    _ = BLASTiling.singleThreaded  // LAPACK calls OpenBLAS too
    precondition(a.rank == 2 && a.shape[0] == a.shape[1], "cholesky expects a square matrix")
    let n = a.shape[0]
    let out = a.copy()
    let uplo = Int8(UInt8(ascii: upper ? "U" : "L"))
    try check("spotrf", LAPACKE_spotrf(LAPACK_ROW_MAJOR, uplo, Int32(n), out.pointer, Int32(n))) {
        .notPositiveDefinite(order: $0)
    }
    zeroOtherTriangle(out, keepUpper: upper)
    return out
}

/// Inverse of a triangular matrix (`strtri`); the other triangle of the result is zero.
public func triangularInverse(_ a: Tensor, upper: Bool) throws -> Tensor {
    _ = BLASTiling.singleThreaded  // LAPACK calls OpenBLAS too
    precondition(a.rank == 2 && a.shape[0] == a.shape[1], "triangularInverse expects a square matrix")
    let n = a.shape[0]
    let out = a.copy()
    zeroOtherTriangle(out, keepUpper: upper)
    let uplo = Int8(UInt8(ascii: upper ? "U" : "L"))
    try check("strtri", LAPACKE_strtri(LAPACK_ROW_MAJOR, uplo, Int8(UInt8(ascii: "N")), Int32(n), out.pointer, Int32(n))) {
        .singular(index: $0)
    }
    return out
}

private func zeroOtherTriangle(_ t: Tensor, keepUpper: Bool) {
    let n = t.shape[0]
    for i in 0..<n {
        for j in 0..<n where keepUpper ? j < i : j > i { t[i, j] = 0 }
    }
}

/// (L·Lᵀ)⁻¹ from a lower Cholesky factor L (`spotri`, torch.cholesky_inverse), both triangles filled.
public func choleskyInverse(_ l: Tensor) throws -> Tensor {
    _ = BLASTiling.singleThreaded  // LAPACK calls OpenBLAS too
    precondition(l.rank == 2 && l.shape[0] == l.shape[1], "choleskyInverse expects a square matrix")
    let n = l.shape[0]
    let out = l.copy()
    try check("spotri", LAPACKE_spotri(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(n), out.pointer, Int32(n))) {
        .singular(index: $0)
    }
    for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { out[i, j] = out[j, i] } }
    return out
}
