import Foundation
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

    /// Integer errors (many ties), repeated weights and one-item classes, against every combination.
    @Test func tiesAndRepeatedWeightsAgainstBruteForce() throws {
        var rng = SeededGenerator(seed: 23)
        for trial in 0..<500 {
            let classes = (0..<(1 + trial % 6)).map { _ in
                (0..<(1 + Int(rng.next() % 6))).map { _ in
                    BitAllocation.Item(error: Double(rng.next() % 8), weight: Int64(1 + rng.next() % 12))
                }
            }
            let minW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).min()! }
            let maxW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).max()! }
            let capacity = minW + Int64(rng.next() % UInt64(maxW - minW + 1))
            let s = try BitAllocation.solve(classes, capacity: capacity)
            let oracle = Self.bruteForce(classes, capacity: capacity)!
            #expect(s.error == oracle && s.optimal && s.weight <= capacity, "trial \(trial): \(s.error) vs \(oracle)")
            #expect(zip(classes, s.choice).reduce(Int64(0)) { $0 + $1.0[$1.1].weight } == s.weight)
        }
    }

    /// The optimum by dynamic programming over every capacity up to the budget (weights are small).
    static func capacityDP(_ classes: [[BitAllocation.Item]], capacity: Int64) -> Double {
        var best = [Double](repeating: 0, count: Int(capacity) + 1)  // least error within weight c
        for items in classes {
            var next = [Double](repeating: .infinity, count: best.count)
            for c in 0..<best.count {
                for it in items where it.weight <= c { next[c] = min(next[c], best[c - Int(it.weight)] + it.error) }
            }
            best = next
        }
        return best[Int(capacity)]
    }

    /// Up to 50 classes of up to 35 items with errors falling in weight, as real tables do: large
    /// enough that the reduced-cost rounds and the dynamic programme do the work.
    @Test func mediumInstancesAgainstCapacityDP() throws {
        var rng = SeededGenerator(seed: 31)
        for trial in 0..<60 {
            let classes = (0..<(10 + trial % 41)).map { _ in
                let sensitivity = Double(1 + rng.next() % 100)
                return (0..<(5 + Int(rng.next() % 31))).map { _ in
                    let w = Int64(1 + rng.next() % 60)
                    return BitAllocation.Item(error: sensitivity * pow(2, -Double(w) / 10) * (1 + Double(rng.next() % 1000) / 5000), weight: w)
                }
            }
            let minW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).min()! }
            let maxW = classes.reduce(Int64(0)) { $0 + $1.map(\.weight).max()! }
            let capacity = minW + Int64(rng.next() % UInt64(maxW - minW + 1))
            let s = try BitAllocation.solve(classes, capacity: capacity)
            let oracle = Self.capacityDP(classes, capacity: capacity)
            #expect(abs(s.error - oracle) <= 1e-12 * oracle && s.optimal && s.weight <= capacity, "trial \(trial): \(s.error) vs \(oracle)")
        }
    }

    struct HiGHSFixture: Decodable {
        struct Solve: Decodable {
            let budget: Double
            let capacity: Int64
            let objective: Double
            let choice: [Int]
        }
        struct Case: Decodable {
            let name: String
            let numel: [Int64]
            let bits: [Double]
            let cost: [[Double]]
            let unique: Bool
            let solves: [Solve]
        }
        let cases: [Case]
    }

    /// Medium instances on the LQ-LoRA grid's bit costs (random ones of Llama-like shapes, one of
    /// ties only, SmolLM2's measured table for 40 matrices) against HiGHS's optima at zero gap
    /// (scripts/make-allocation-fixtures.py).
    @Test func highsOptimaOnMediumInstances() throws {
        let path = PipelineOracleTests.fixtures + "/allocation-highs.json"
        let fixture = try JSONDecoder().decode(HiGHSFixture.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(fixture.cases.count >= 4)
        for c in fixture.cases {
            let classes = zip(c.numel, c.cost).map { n, row in
                zip(c.bits, row).map { BitAllocation.Item(error: $1, bitsPerParameter: $0, parameters: n) }
            }
            for solve in c.solves {
                let capacity = BitAllocation.Item.capacity(budget: solve.budget, parameters: c.numel.reduce(0, +))
                #expect(capacity == solve.capacity, "\(c.name) at \(solve.budget): the capacity")
                let s = try BitAllocation.solve(classes, capacity: capacity)
                #expect(s.optimal && s.weight <= capacity)
                #expect(abs(s.error - solve.objective) <= 1e-12 * solve.objective, "\(c.name) at \(solve.budget): \(s.error) vs HiGHS \(solve.objective)")
                if c.unique { #expect(s.choice == solve.choice, "\(c.name) at \(solve.budget)") }
            }
        }
    }

    /// Stopped before the search, the answer still fits and brackets the optimum with its bound.
    @Test func aTimeLimitLeavesAFeasibleSolutionAndABound() throws {
        var rng = SeededGenerator(seed: 41)
        let classes = (0..<40).map { _ in
            (0..<30).map { _ in
                let w = Int64(1 + rng.next() % 60)
                return BitAllocation.Item(error: pow(2, -Double(w) / 10) * (1 + Double(rng.next() % 1000) / 500), weight: w)
            }
        }
        let capacity: Int64 = 1000
        let oracle = Self.capacityDP(classes, capacity: capacity)
        let s = try BitAllocation.solve(classes, capacity: capacity, timeLimit: 0)
        #expect(s.weight <= capacity && s.lowerBound <= oracle + 1e-12 && s.error >= oracle - 1e-12)
        #expect(abs(zip(classes, s.choice).reduce(0.0) { $0 + $1.0[$1.1].error } - s.error) < 1e-12)
        #expect(s.optimal || s.gap > 0)
    }

    @Test func nonFiniteErrorsAreNamed() {
        let classes = [[BitAllocation.Item(error: 1, weight: 5)], [.init(error: 2, weight: 3), .init(error: .nan, weight: 4)]]
        #expect {
            try BitAllocation.solve(classes, capacity: 9)
        } throws: { error in
            guard case let .invalidItem(c, item, e, _) = error as? BitAllocation.Failure else { return false }
            return c == 1 && item == 1 && e.isNaN
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
