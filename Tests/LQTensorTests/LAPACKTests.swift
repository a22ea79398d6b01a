import Foundation
import LQTensor
import Testing

struct LAPACKTests {
    @Test(arguments: [(40, 25), (25, 40), (32, 32)])
    func svdRecoversAKnownSpectrum(m: Int, n: Int) throws {
        var rng = SeededGenerator(seed: UInt64(m * 100 + n))
        let k = min(m, n)
        let spectrum = (0..<k).map { Float(10.0 * pow(0.8, Double($0))) }
        let a = try matrixWithSpectrum(rows: m, cols: n, singularValues: spectrum, rng: &rng)
        let d = try svd(a)
        #expect(d.u.shape == [m, k] && d.vt.shape == [k, n])
        for i in 0..<k { #expect(abs(d.s[i] - spectrum[i]) <= 1e-4 * spectrum[0]) }
        #expect(orthonormalityError(d.u) < 1e-4)
        #expect(orthonormalityError(d.vt.transposed()) < 1e-4)
        #expect(relativeError(d.reconstruct(), a) < 1e-5)
        // Truncation is optimal (Eckart–Young): the error is the tail of the spectrum.
        let tail = spectrum[5...].reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
        let a5 = d.reconstruct(rank: 5)
        let err = zip(a.buffer, a5.buffer).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
        #expect(abs(err - tail) / tail < 1e-3)
    }

    @Test func svdLeavesItsInputUnchanged() throws {
        var rng = SeededGenerator(seed: 3)
        let a = Tensor.gaussian([6, 4], using: &rng)
        let before = a.array
        _ = try svd(a)
        #expect(a.array == before)
    }

    @Test(arguments: [(30, 12), (12, 30)])
    func qrFactorsIntoOrthonormalTimesUpperTriangular(m: Int, n: Int) throws {
        var rng = SeededGenerator(seed: 11)
        let a = Tensor.gaussian([m, n], using: &rng)
        let (q, r) = try qr(a)
        let k = min(m, n)
        #expect(q.shape == [m, k] && r.shape == [k, n])
        #expect(orthonormalityError(q) < 1e-5)
        for i in 0..<k { for j in 0..<min(i, n) { #expect(r[i, j] == 0) } }
        #expect(relativeError(matmul(q, r), a) < 1e-5)
    }

    @Test(arguments: [false, true])
    func choleskyOfASymmetricPositiveDefiniteMatrix(upper: Bool) throws {
        var rng = SeededGenerator(seed: 12)
        let g = Tensor.gaussian([9, 9], using: &rng)
        let a = matmul(g, g, transposeB: true)
        for i in 0..<9 { a[i, i] += 9 }
        let f = try cholesky(a, upper: upper)
        let back = upper ? matmul(f, transposeA: true, f) : matmul(f, f, transposeB: true)
        #expect(relativeError(back, a) < 1e-5)
        for i in 0..<9 { for j in 0..<9 where upper ? j < i : j > i { #expect(f[i, j] == 0) } }
    }

    @Test func choleskyNamesTheFailingMinor() throws {
        // Leading 1×1 minor is positive, the 2×2 one is not (det = 1 − 4 < 0).
        let a = Tensor(shape: [3, 3], values: [1, 2, 0, 2, 1, 0, 0, 0, 1])
        #expect(throws: LinearAlgebraError.notPositiveDefinite(order: 2)) { try cholesky(a) }
    }

    @Test(arguments: [false, true])
    func triangularInverse(upper: Bool) throws {
        var rng = SeededGenerator(seed: 13)
        let t = Tensor.gaussian([8, 8], using: &rng)
        for i in 0..<8 { t[i, i] = 2 + abs(t[i, i]) }
        let inv = try LQTensor.triangularInverse(t, upper: upper)
        let tri = t.copy()
        for i in 0..<8 { for j in 0..<8 where upper ? j < i : j > i { tri[i, j] = 0 } }
        #expect(maxAbsDifference(matmul(tri, inv), identity(8)) < 1e-5)
    }

    @Test func triangularInverseOfASingularMatrixNamesTheZeroPivot() {
        let t = Tensor(shape: [3, 3], values: [1, 0, 0, 5, 0, 0, 2, 3, 4])
        #expect(throws: LinearAlgebraError.singular(index: 2)) { try LQTensor.triangularInverse(t, upper: false) }
    }

    @Test func randomizedSVDMatchesTheTopOfAKnownSpectrum() throws {
        var rng = SeededGenerator(seed: 21)
        let spectrum = (0..<60).map { Float(pow(0.85, Double($0))) }
        let a = try matrixWithSpectrum(rows: 200, cols: 120, singularValues: spectrum, rng: &rng)
        let r = 12
        let d = try randomizedSVD(a, rank: r, rng: &rng)
        #expect(d.u.shape == [200, r] && d.vt.shape == [r, 120] && d.s.count == r)
        for i in 0..<r { #expect(abs(d.s[i] - spectrum[i]) <= 2e-3 * spectrum[i]) }
        #expect(orthonormalityError(d.u) < 1e-4)
        let optimal = spectrum[r...].reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
        let approx = d.reconstruct()
        let err = zip(a.buffer, approx.buffer).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
        #expect(err <= optimal * 1.01, "error \(err), optimal \(optimal)")
    }

    @Test func randomizedSVDOnAFlatTailStaysNearOptimal() throws {
        // Slow decay is the hard case for range finders; power iterations keep it close.
        var rng = SeededGenerator(seed: 22)
        let spectrum = (0..<80).map { Float($0 < 10 ? 10 - Double($0) * 0.5 : 1.0) }
        let a = try matrixWithSpectrum(rows: 150, cols: 100, singularValues: spectrum, rng: &rng)
        let d = try randomizedSVD(a, rank: 10, oversample: 10, powerIterations: 2, rng: &rng)
        let optimal = spectrum[10...].reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
        let approx = d.reconstruct()
        let err = zip(a.buffer, approx.buffer).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
        #expect(err <= optimal * 1.05, "error \(err), optimal \(optimal)")
    }
}
