import LQLoRA
import LQQuant
import LQTensor
import Testing

struct BitAllocationTests {
    /// Every combination, for small instances: the oracle.
    static func bruteForce(_ classes: [[BitAllocation.Item]], capacity: Int64) -> Double? {
        var best: Double?
        func walk(_ k: Int, _ w: Int64, _ e: Double) {
            if w > capacity { return }
            if k == classes.count {
                if best == nil || e < best! { best = e }
                return
            }
            for it in classes[k] { walk(k + 1, w + it.weight, e + it.error) }
        }
        walk(0, 0, 0)
        return best
    }

    static func randomInstance(_ rng: inout SeededGenerator, classes: Int, items: Int) -> [[BitAllocation.Item]] {
        (0..<classes).map { _ in
            (0..<items).map { _ in
                let w = Int64(1 + rng.next() % 100)
                // Errors that mostly fall with weight, with noise so fronts are not convex.
                let e = 100.0 / Double(w) + Double(rng.next() % 1000) / 100
                return BitAllocation.Item(error: e, weight: w)
            }
        }
    }

    @Test func optimalOnRandomInstances() throws {
        var rng = SeededGenerator(seed: 17)
        for trial in 0..<200 {
            let classes = Self.randomInstance(&rng, classes: 2 + trial % 5, items: 2 + trial % 4)
            let minW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).min()! }
            let maxW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).max()! }
            let capacity = minW + Int64(rng.next() % UInt64(maxW - minW + 1))
            let s = try BitAllocation.solve(classes, capacity: capacity)
            let oracle = Self.bruteForce(classes, capacity: capacity)!
            #expect(abs(s.error - oracle) <= 1e-9 * oracle, "trial \(trial): \(s.error) vs \(oracle)")
            #expect(s.optimal && s.weight <= capacity && s.gap == 0)
            let chosen = zip(classes, s.choice).reduce(0.0) { $0 + $1.0[$1.1].error }
            #expect(abs(chosen - s.error) <= 1e-9 * max(1, chosen))
        }
    }

    @Test func infeasibleBudgetsNameTheMinimum() {
        let classes = [[BitAllocation.Item(error: 1, weight: 5), .init(error: 0.5, weight: 8)], [.init(error: 2, weight: 3)]]
        #expect(throws: BitAllocation.Failure.infeasible(minimumWeight: 8, capacity: 7)) { try BitAllocation.solve(classes, capacity: 7) }
    }

    @Test func budgetExactlyAtAConfigurationsCost() throws {
        // Three matrices over the QLoRA points: a budget of exactly 3.127 bits affords NF3 everywhere, no more.
        let configs = [QuantConfig.qlora(bits: 2), .qlora(bits: 3), .qlora(bits: 4)]
        let numel: [Int64] = [16384, 32768, 16384]
        let classes = numel.map { n in
            configs.map { c in BitAllocation.Item(error: 1 / c.bitsPerParameter, weight: Int64(c.bitsPerParameter * 16384) * n) }
        }
        let capacity = Int64(configs[1].bitsPerParameter * 16384) * numel.reduce(0, +)
        let s = try BitAllocation.solve(classes, capacity: capacity)
        #expect(s.weight <= capacity && s.optimal)
        #expect(abs(s.error - (Self.bruteForce(classes, capacity: capacity) ?? -1)) < 1e-12)
        // Mixing NF4 and NF2 uses exactly the same bits as NF3 everywhere, and errs less here.
        #expect(s.weight == capacity && s.choice == [2, 0, 2])
        // One matrix: a budget of exactly NF3's cost buys NF3, one unit less only NF2.
        let one = [classes[0]]
        #expect(try BitAllocation.solve(one, capacity: classes[0][1].weight).choice == [1])
        #expect(try BitAllocation.solve(one, capacity: classes[0][1].weight - 1).choice == [0])
    }
}
