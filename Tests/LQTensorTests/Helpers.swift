import LQTensor

/// C = op(A)·op(B) by the textbook triple loop in double precision: the oracle for gemm.
func naiveMatmul(_ a: MatrixRef, _ ta: Bool, _ b: MatrixRef, _ tb: Bool) -> [[Double]] {
    let m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols, n = tb ? b.rows : b.cols
    var c = [[Double]](repeating: [Double](repeating: 0, count: n), count: m)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k { s += Double(ta ? a[p, i] : a[i, p]) * Double(tb ? b[j, p] : b[p, j]) }
            c[i][j] = s
        }
    }
    return c
}

func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.pointer[i] - b.pointer[i])) }
    return m
}

func relativeError(_ a: Tensor, _ reference: Tensor) -> Double {
    let diff = Tensor(zeros: a.shape)
    for i in 0..<a.count { diff.pointer[i] = a.pointer[i] - reference.pointer[i] }
    return diff.frobeniusNorm / reference.frobeniusNorm
}

func identity(_ n: Int) -> Tensor {
    let t = Tensor(zeros: [n, n])
    for i in 0..<n { t[i, i] = 1 }
    return t
}

/// Max |QᵀQ − I| for a matrix with (supposedly) orthonormal columns.
func orthonormalityError(_ q: Tensor) -> Float {
    maxAbsDifference(matmul(q, transposeA: true, q), identity(q.shape[1]))
}

/// A random matrix with a chosen spectrum: U·diag(s)·Vᵀ, U and V random orthonormal.
/// The orthonormal factors come from QR of Gaussian matrices, checked orthonormal by the caller's tests.
func matrixWithSpectrum(rows m: Int, cols n: Int, singularValues s: [Float], rng: inout SeededGenerator) throws -> Tensor {
    let k = s.count
    let u = try qr(Tensor.gaussian([m, k], using: &rng)).q
    let v = try qr(Tensor.gaussian([n, k], using: &rng)).q
    for i in 0..<m { for j in 0..<k { u[i, j] *= s[j] } }
    return matmul(u, v, transposeB: true)
}
