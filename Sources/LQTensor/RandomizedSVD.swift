/// Truncated SVD by randomized range finding (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1):
/// sample the range of A with a Gaussian test matrix of `rank + oversample` columns, sharpen it
/// with `powerIterations` rounds of re-orthonormalised power iteration, then take the exact SVD of
/// the small projected matrix. Returns the top `rank` triplets.
public func randomizedSVD(_ a: Tensor, rank: Int, oversample: Int = 10, powerIterations: Int = 2,
                          rng: inout SeededGenerator) throws -> SVD {
    precondition(a.rank == 2, "randomizedSVD expects a matrix")
    let m = a.shape[0], n = a.shape[1]
    precondition(rank >= 1 && rank <= min(m, n), "rank \(rank) out of range for \(m)x\(n)")
    let l = min(rank + oversample, min(m, n))

    let omega = Tensor.gaussian([n, l], using: &rng)
    var q = try orthonormalBasis(matmul(a, omega))  // [m, l]
    for _ in 0..<powerIterations {
        let z = try orthonormalBasis(matmul(a, transposeA: true, q))  // [n, l]
        q = try orthonormalBasis(matmul(a, z))
    }
    let b = matmul(q, transposeA: true, a)  // [l, n]
    let small = try svd(b)
    let u = matmul(q, small.u)  // [m, l]
    return SVD(
        u: u.block(rows: 0..<m, cols: 0..<rank).toTensor(),
        s: Array(small.s.prefix(rank)),
        vt: small.vt.rows(0..<rank).copy())
}
