import Foundation
import LQLoRA
import LQQuant
import LQTensor
import Testing

/// AllocationTable: costs files, the --ilp-cache table, and the memory planner against every choice.
struct AllocationTableTests {
    /// Matrices of rows × cols with rows a multiple of 512 and cols of 256, so every size in bytes
    /// (bits · numel / 8 for grid bits) is whole and the planner's rounding never binds.
    static func randomTable(_ rng: inout SeededGenerator, matrices: Int, configs: Int) throws -> AllocationTable {
        let grid = QuantConfig.lqloraGrid
        let picked = (0..<configs).map { _ in grid[Int(rng.next() % UInt64(grid.count))] }
        let shapes = (0..<matrices).map { _ in [512 * Int(1 + rng.next() % 3), 256 * Int(1 + rng.next() % 3)] }
        let cost = shapes.map { s in
            picked.map { c in Double(s[0] * s[1]) * pow(2, -2 * c.bitsPerParameter) * (1 + Double(rng.next() % 100) / 100) }
        }
        return try AllocationTable(matrices: (0..<matrices).map { "m\($0)" }, numel: shapes.map { Int64($0[0] * $0[1]) }, shapes: shapes,
                                   configs: picked.map(\.name), bits: picked.map(\.bitsPerParameter), cost: cost)
    }

    /// Every choice: the least error among those whose size fits, and the smallest size.
    static func bruteForce(_ t: AllocationTable, _ size: ([Int]) throws -> Int64, memory: Int64) throws -> (error: Double?, smallest: Int64) {
        var best: Double?, smallest = Int64.max
        var choice = [Int](repeating: 0, count: t.matrices.count)
        func walk(_ k: Int) throws {
            if k == choice.count {
                let bytes = try size(choice)
                smallest = min(smallest, bytes)
                let e = choice.enumerated().reduce(0.0) { $0 + t.cost[$1.offset][$1.element] }
                if bytes <= memory && (best == nil || e < best!) { best = e }
                return
            }
            for j in t.configs.indices {
                choice[k] = j
                try walk(k + 1)
            }
        }
        try walk(0)
        return (best, smallest)
    }

    @Test func memoryPlanIsTheBestChoiceThatFits() throws {
        var rng = SeededGenerator(seed: 3)
        for trial in 0..<40 {
            let t = try Self.randomTable(&rng, matrices: 2 + trial % 3, configs: 3 + trial % 4)
            let sizing = t.payloadSizing(fixedBytes: Int64(rng.next() % 100_000))
            let total = { (choice: [Int]) in try sizing.size(choice).total }
            let lo = try Self.bruteForce(t, total, memory: 0).smallest
            let hi = try total(t.matrices.map { _ in t.bits.indices.max { t.bits[$0] < t.bits[$1] }! })
            let memory = lo + Int64(rng.next() % UInt64(hi - lo + 1))
            let plan = try t.plan(memory: memory, sizing: sizing)
            let oracle = try Self.bruteForce(t, total, memory: memory)
            let size = try sizing.size(plan.allocation.choice)
            #expect(plan.size.total <= memory && plan.size == size)
            #expect(abs(plan.allocation.error - oracle.error!) <= 1e-12 * oracle.error!, "trial \(trial): \(plan.allocation.error) vs \(oracle.error!)")
            #expect(plan.allocation.optimal)
            #expect(throws: AllocationTable.Failure.memoryTooSmall(target: lo - 1, minimum: lo)) {
                try t.plan(memory: lo - 1, sizing: sizing)
            }
        }
    }

    /// Headers that depend on the whole choice (as dtype names and offsets' digits do): the plan
    /// still fits, its size is the sizing's own, it errs no more than the best choice that fits
    /// with the largest headers, and the smallest size it names is one it then meets.
    @Test func memoryPlanFitsWhenTheHeadersDependOnTheChoice() throws {
        var rng = SeededGenerator(seed: 5)
        for trial in 0..<40 {
            let t = try Self.randomTable(&rng, matrices: 2 + trial % 3, configs: 3 + trial % 4)
            let payload = t.payloadSizing(fixedBytes: 1000)
            let most = Int64(7 * t.matrices.count + 4)
            let sizing = AllocationTable.ModelSizing(matrixBytes: payload.matrixBytes) { choice in
                let p = try payload.size(choice)
                let headers = Int64(7 * choice.filter { $0 % 2 == 1 }.count + choice.reduce(0, +) % 5)
                return .init(quantized: p.quantized, lowRank: 0, fixed: p.fixed, headers: headers)
            }
            let lo = try Self.bruteForce(t, { try payload.size($0).total }, memory: 0).smallest
            let memory = lo + most + Int64(rng.next() % 20_000)
            let plan = try t.plan(memory: memory, sizing: sizing)
            let size = try sizing.size(plan.allocation.choice)
            #expect(plan.size.total <= memory && plan.size == size, "trial \(trial)")
            let margin = try Self.bruteForce(t, { try payload.size($0).total + most }, memory: memory)
            #expect(plan.allocation.error <= margin.error! * (1 + 1e-12), "trial \(trial): \(plan.allocation.error) vs \(margin.error!)")

            guard case let .memoryTooSmall(_, smallest)? = #expect(throws: AllocationTable.Failure.self, performing: {
                try t.plan(memory: lo - 1, sizing: sizing)
            }) else { continue }
            #expect(smallest >= lo && smallest <= lo + most)
            #expect(try t.plan(memory: smallest, sizing: sizing).size.total == smallest)
        }
    }

    @Test func aMemoryTargetAboveEverythingIsUnconstrained() throws {
        var rng = SeededGenerator(seed: 4)
        let t = try Self.randomTable(&rng, matrices: 3, configs: 5)
        let plan = try t.plan(memory: 1 << 40, sizing: t.payloadSizing(fixedBytes: 1000))
        let least = t.cost.map { row in row.indices.min { row[$0] < row[$1] }! }
        #expect(plan.unconstrained && plan.allocation.choice == least && plan.allocation.budget == plan.allocation.averageBits)
        #expect(plan.allocation.error == t.cost.reduce(0) { $0 + $1.min()! })
        #expect(plan.size.fixed == 1000 && plan.size.lowRank == 0 && plan.size.headers == 0)
    }

    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "lqlora-costs-\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func costsFilesAreCheckedByName() throws {
        let good = try write(#"{"numel": [10, 20], "bits": [2, 4], "cost": [[1, 0.5], [2, 1]], "budget": 3, "names": ["a", "b"], "configs": ["x", "y"], "fixed_bytes": 7}"#)
        let (table, budget, fixed) = try AllocationTable.load(costs: good)
        #expect(table.matrices == ["a", "b"] && table.configs == ["x", "y"] && budget == 3 && fixed == 7)
        let a = try table.solve(budget: 3)
        // 10·4 + 20·2 = 80 ≤ 90 bits: the first matrix at 4 bits, the second at 2 (error 2.5); 20·4 + 10·2 = 100 does not fit.
        #expect(a.choice == [1, 0] && a.error == 2.5 && a.optimal)
        #expect(table.histogram(a).map(\.count) == [1, 1])

        let cases: [(String, AllocationTable.Failure)] = [
            (#"{"numel": [10, 20], "bits": [2, 4], "cost": [[1, 0.5], [2]]}"#, .malformed(path: "", detail: "cost row 1 ('matrix 1') has 1 entries for 2 configurations")),
            (#"{"numel": [10, -20], "bits": [2, 4], "cost": [[1, 0.5], [2, 1]]}"#, .invalidNumel(matrix: "matrix 1", value: -20)),
            (#"{"numel": [10], "bits": [2, 0], "cost": [[1, 0.5]]}"#, .invalidBits(config: "config 1", value: 0)),
            (#"{"numel": [10], "bits": [2, 4], "cost": [[1, -0.5]]}"#, .invalidCost(matrix: "matrix 0", config: "config 1", value: -0.5)),
            (#"{"numel": [10], "bits": [2, 4], "cost": [[1, 0.5]], "costs": 1}"#, .malformed(path: "", detail: #"unknown key "costs" (known: numel, bits, cost, budget, names, configs, fixed_bytes)"#)),
            (#"{"numel": [10.5], "bits": [2, 4], "cost": [[1, 0.5]]}"#, .malformed(path: "", detail: #""numel"[0] = 10.5 is not a whole number of parameters"#)),
        ]
        for (text, expected) in cases {
            let path = try write(text)
            #expect(throws: Self.withPath(expected, path)) { try AllocationTable.load(costs: path) }
        }
        // Python writes NaN bare; it is named, not a parse failure.
        let nan = try write(#"{"numel": [10], "bits": [2, 4], "cost": [[1, NaN]]}"#)
        #expect {
            try AllocationTable.load(costs: nan)
        } throws: { error in
            guard case let .invalidCost(m, c, v) = error as? AllocationTable.Failure else { return false }
            return m == "matrix 0" && c == "config 1" && v.isNaN
        }
        #expect(throws: AllocationTable.Failure.budgetInfeasible(budget: 1.5, minimum: 2)) { try table.solve(budget: 1.5) }
    }

    static func withPath(_ f: AllocationTable.Failure, _ path: String) -> AllocationTable.Failure {
        if case let .malformed(_, detail) = f { return .malformed(path: path, detail: detail) }
        return f
    }

    @Test func theCacheTableByOptionsAndGrid() throws {
        var cache = ErrorTableCache()
        let compact = ErrorTable.candidates(.compact).map(\.name), full = ErrorTable.candidates(.full).map(\.name)
        let plain = ErrorTableCache.optionsKey(rank: 8, svd: .randomized, fisher: nil)
        let weighted = ErrorTableCache.optionsKey(rank: 8, svd: .randomized, fisher: "F32 [64, 32] crc32:1")
        for (i, name) in ["b.weight", "a.weight"].enumerated() {
            let fingerprint = "BF16 [\(64 * (i + 1)), 32] crc32:\(i)"
            cache.store(name, weights: fingerprint, options: plain, configs: full, errors: full.indices.map { Double($0 + i) })
            cache.store(name, weights: fingerprint, options: weighted, configs: compact, errors: compact.indices.map { Double(2 * $0) })
        }
        let path = NSTemporaryDirectory() + "lqlora-cache-\(UUID().uuidString).json"
        try cache.save(path: path)
        let t = try AllocationTable.load(cache: path, rank: 8, svd: .randomized, fisherWeighted: false, grid: nil)
        #expect(t.matrices == ["a.weight", "b.weight"] && t.configs == full && t.shapes! == [[128, 32], [64, 32]] && t.cost[0][3] == 4)
        let w = try AllocationTable.load(cache: path, rank: 8, svd: .randomized, fisherWeighted: true, grid: nil, order: ["b.weight", "a.weight"])
        #expect(w.matrices == ["b.weight", "a.weight"] && w.configs == compact && w.cost[1][2] == 4)
        #expect(throws: AllocationTable.Failure.self) { try AllocationTable.load(cache: path, rank: 8, svd: .randomized, fisherWeighted: true, grid: .full) }
        #expect(throws: AllocationTable.Failure.noTable(path: path, matrix: "a.weight", key: ErrorTableCache.optionsKey(rank: 0, svd: .randomized, fisher: nil),
                                                        available: [plain, weighted].sorted())) {
            try AllocationTable.load(cache: path, rank: 0, svd: .randomized, fisherWeighted: false, grid: nil)
        }
        // Bits with the rank-8 part: 16 · 8 · (rows + cols) over the parameters.
        let a = try t.solve(budget: 3)
        let withLowRank = try t.averageBitsWithLowRank(a, rank: 8)
        #expect(abs(withLowRank - a.averageBits - 16 * 8.0 * (160 + 96) / (128 * 32 + 64 * 32)) < 1e-12)
    }
}
