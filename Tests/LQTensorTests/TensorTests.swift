import LQTensor
import Testing

struct TensorTests {
    @Test func viewsShareStorageAndCopiesDoNot() {
        let t = Tensor(shape: [4, 3], values: (0..<12).map(Float.init))
        let middle = t.rows(1..<3)
        #expect(middle.shape == [2, 3] && middle.array == [3, 4, 5, 6, 7, 8])
        middle[0, 0] = 100
        #expect(t[1, 0] == 100)
        let c = t.copy()
        c[0, 0] = -1
        #expect(t[0, 0] == 0)
        #expect(t.reshaped([2, 6])[1, 0] == 6)
    }

    @Test func blocksAreStridedViews() {
        let t = Tensor(shape: [4, 5], values: (0..<20).map(Float.init))
        let b = t.block(rows: 1..<3, cols: 2..<4)
        #expect(b.ld == 5 && b[0, 0] == 7 && b[1, 1] == 13)
        #expect(b.toTensor().array == [7, 8, 12, 13])
    }

    @Test func wrappedStorageKeepsItsOwnerAlive() {
        final class Owner { let p = UnsafeMutablePointer<Float>.allocate(capacity: 4); deinit { p.deallocate() } }
        var owner: Owner? = Owner()
        for i in 0..<4 { owner!.p[i] = Float(i) }
        let storage = TensorStorage(wrapping: UnsafeMutableRawPointer(owner!.p), byteCount: 16, owner: owner)
        weak let weakOwner = owner
        owner = nil
        let t = Tensor(shape: [2, 2], storage: storage)
        #expect(weakOwner != nil)
        #expect(t.array == [0, 1, 2, 3])
    }

    @Test func parallelForEachVisitsEveryIndexOnce() {
        let n = 10_007
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: n)
        hits.initialize(repeating: 0, count: n)
        defer { hits.deallocate() }
        Parallel.forEach(n, minChunk: 100) { range in for i in range { hits[i] += 1 } }
        #expect((0..<n).allSatisfy { hits[$0] == 1 })
    }

    @Test func seededGeneratorIsReproducibleAndGaussian() {
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42)
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
        var g = SeededGenerator(seed: 5)
        let n = 200_000
        var sum = 0.0, sumSq = 0.0
        for _ in 0..<n { let x = Double(g.nextGaussian()); sum += x; sumSq += x * x }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        // Standard errors: 1/√n ≈ 0.0022 for the mean, √(2/n) ≈ 0.0032 for the variance.
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.015)
    }

    /// advance(by:) is next() called n times: checked against the draws themselves, for lengths
    /// that set low, high and many bits, and composed (a + b = a then b).
    @Test func advancingTheGeneratorEqualsDrawing() {
        for n: UInt64 in [0, 1, 2, 3, 63, 64, 1000, 65_537, 1 << 20 | 12_345] {
            var drawn = SeededGenerator(keys: [7, n]), jumped = drawn
            for _ in 0..<n { _ = drawn.next() }
            jumped.advance(by: n)
            #expect(jumped.state == drawn.state, "advance(by: \(n))")
            #expect(jumped.next() == drawn.next())
        }
        var once = SeededGenerator(seed: 3), twice = once
        once.advance(by: 1 << 40 + 977)
        twice.advance(by: 1 << 40)
        twice.advance(by: 977)
        #expect(once.state == twice.state)
    }
}
