import Foundation
import LQFormats
import LQQuant

/// A bit-allocation instance by name: matrices with their parameter counts (and shapes, when
/// known), candidate configurations with their bits per parameter, and each matrix's error under
/// each. It is solved for a budget, for many budgets (the trade-off curve) or for a memory target.
/// Weights are `BitAllocation.Item`'s: round(bits · 2^14) · parameters, exact for bits that are
/// multiples of 2^-14 (every grid configuration).
public struct AllocationTable: Sendable {
    public let matrices: [String]
    public let numel: [Int64]
    /// [rows, cols] of each matrix when known (the low-rank part's size needs them).
    public let shapes: [[Int]]?
    public let configs: [String]
    public let bits: [Double]
    /// `matrices` × `configs`.
    public let cost: [[Double]]

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case unreadable(path: String, detail: String)
        case malformed(path: String, detail: String)
        case invalidNumel(matrix: String, value: Int64)
        case invalidBits(config: String, value: Double)
        case invalidCost(matrix: String, config: String, value: Double)
        case budgetInfeasible(budget: Double, minimum: Double)
        case noTable(path: String, matrix: String, key: String, available: [String])
        case incompleteGrid(path: String, matrix: String, grid: String, missing: [String])
        case memoryTooSmall(target: Int64, minimum: Int64)
        case shapesUnknown

        public var description: String {
            switch self {
            case let .unreadable(path, detail): return "\(path): \(detail)"
            case let .malformed(path, detail): return "\(path): \(detail)"
            case let .invalidNumel(matrix, value): return "matrix '\(matrix)' has \(value) parameters: numel must be positive"
            case let .invalidBits(config, value): return "configuration '\(config)' costs \(value) bits per parameter: bits must be positive and finite"
            case let .invalidCost(matrix, config, value): return "the cost of '\(matrix)' under '\(config)' is \(value): costs must be finite and non-negative"
            case let .budgetInfeasible(budget, minimum):
                return String(format: "budget %.4f cannot be met: the smallest feasible budget is %.4f bits per parameter", budget, minimum)
            case let .noTable(path, matrix, key, available):
                return "\(path): no error table '\(key)' for '\(matrix)' (it has: \(available.isEmpty ? "none" : available.joined(separator: "; ")))"
            case let .incompleteGrid(path, matrix, grid, missing):
                return "\(path): '\(matrix)' lacks \(missing.count) configurations of the \(grid) grid (e.g. \(missing.prefix(3).joined(separator: ", ")))"
            case let .memoryTooSmall(target, minimum):
                func mib(_ n: Int64) -> String { String(format: "%.4g MiB", Double(n) / 1048576) }
                return "\(mib(target)) (\(target) bytes) cannot hold the model: the smallest that fits (every matrix at its fewest bytes) is \(mib(minimum)) (\(minimum) bytes)"
            case .shapesUnknown: return "the matrices' shapes are unknown, so the low-rank part cannot be sized"
            }
        }
    }

    /// Checks every count and value, naming the first that is wrong.
    public init(matrices: [String], numel: [Int64], shapes: [[Int]]? = nil, configs: [String], bits: [Double], cost: [[Double]],
                source: String = "the table") throws {
        guard matrices.count == numel.count, matrices.count == cost.count, shapes.map({ $0.count == numel.count }) ?? true else {
            throw Failure.malformed(path: source, detail: "\(numel.count) numel, \(cost.count) cost rows and \(matrices.count) names: one each per matrix")
        }
        guard !matrices.isEmpty else { throw Failure.malformed(path: source, detail: "no matrices") }
        guard configs.count == bits.count, !bits.isEmpty else {
            throw Failure.malformed(path: source, detail: "\(bits.count) bits and \(configs.count) configuration names: one each per configuration, at least one")
        }
        for (j, b) in bits.enumerated() where !(b.isFinite && b > 0) { throw Failure.invalidBits(config: configs[j], value: b) }
        for (i, row) in cost.enumerated() {
            guard numel[i] > 0 else { throw Failure.invalidNumel(matrix: matrices[i], value: numel[i]) }
            guard row.count == bits.count else {
                throw Failure.malformed(path: source, detail: "cost row \(i) ('\(matrices[i])') has \(row.count) entries for \(bits.count) configurations")
            }
            if let j = row.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw Failure.invalidCost(matrix: matrices[i], config: configs[j], value: row[j])
            }
        }
        self.matrices = matrices
        self.numel = numel
        self.shapes = shapes
        self.configs = configs
        self.bits = bits
        self.cost = cost
    }

    public var parameters: Int64 { numel.reduce(0, +) }

    /// The cheapest and the dearest average bits any choice can have.
    public var bitsRange: ClosedRange<Double> {
        let lo = bits.min()!, hi = bits.max()!
        return lo...hi
    }

    /// One solved budget.
    public struct Allocation: Sendable {
        public let budget: Double
        /// The configuration index chosen for each matrix.
        public let choice: [Int]
        public let error: Double
        public let lowerBound: Double
        public let optimal: Bool
        public let nodes: Int
        public let seconds: Double
        /// Σ bits · numel / Σ numel of the choice.
        public let averageBits: Double
        public var gap: Double { max(0, error - lowerBound) }
        public var relativeGap: Double { gap / max(error, 1e-300) }
    }

    /// The optimal choice under `budget` average bits per parameter.
    public func solve(budget: Double, timeLimit: TimeInterval = 60) throws -> Allocation {
        try solve(capacity: BitAllocation.Item.capacity(budget: budget, parameters: parameters), budget: budget, timeLimit: timeLimit)
    }

    func solve(capacity: Int64, budget: Double, timeLimit: TimeInterval) throws -> Allocation {
        let classes = zip(cost, numel).map { row, n in zip(bits, row).map { BitAllocation.Item(error: $1, bitsPerParameter: $0, parameters: n) } }
        let start = DispatchTime.now().uptimeNanoseconds
        let s: BitAllocation.Solution
        do { s = try BitAllocation.solve(classes, capacity: capacity, timeLimit: timeLimit) } catch let BitAllocation.Failure.infeasible(minimum, _) {
            throw Failure.budgetInfeasible(budget: budget, minimum: BitAllocation.Item.bits(capacity: minimum, parameters: parameters))
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        return Allocation(budget: budget, choice: s.choice, error: s.error, lowerBound: s.lowerBound, optimal: s.optimal,
                          nodes: s.nodes, seconds: seconds, averageBits: averageBits(s.choice))
    }

    /// How many matrices took each configuration, most used first (then in table order).
    public func histogram(_ a: Allocation) -> [(config: String, count: Int)] {
        var counts = [Int](repeating: 0, count: configs.count)
        for j in a.choice { counts[j] += 1 }
        return counts.indices.filter { counts[$0] > 0 }.sorted { (counts[$0], -$0) > (counts[$1], -$1) }.map { (configs[$0], counts[$0]) }
    }

    /// Parameters of the rank-r low-rank parts (r · (rows + cols) per matrix).
    public func lowRankParameters(rank: Int) throws -> Int64 {
        if rank == 0 { return 0 }
        guard let shapes else { throw Failure.shapesUnknown }
        return shapes.reduce(0) { $0 + Int64(rank * ($1[0] + $1[1])) }
    }

    /// Average bits per parameter with the low-rank parts counted at 16 bits, as the LQ-LoRA paper
    /// counts them (quantize writes them in fp32, and the memory planner counts what it writes).
    public func averageBitsWithLowRank(_ a: Allocation, rank: Int) throws -> Double {
        a.averageBits + 16 * Double(try lowRankParameters(rank: rank)) / Double(parameters)
    }

    /// A model's size in bytes, by part.
    public struct Size: Sendable, Equatable {
        /// The quantized matrices' tensors: codes, scales, codebooks, scale offsets.
        public let quantized: Int64
        public let lowRank: Int64
        /// Tensors stored unchanged (embeddings, norms, lm_head).
        public let fixed: Int64
        /// What the files hold beside tensor data: each safetensors file's length prefix and JSON
        /// header (with the quantization metadata), and the index of a sharded model.
        public let headers: Int64
        public var total: Int64 { quantized + lowRank + fixed + headers }

        public init(quantized: Int64, lowRank: Int64, fixed: Int64, headers: Int64) {
            self.quantized = quantized
            self.lowRank = lowRank
            self.fixed = fixed
            self.headers = headers
        }
    }

    /// How the memory planner sizes a choice: each matrix's bytes under each configuration (what
    /// the ILP sees), and the exact size of a whole choice (which may add bytes that depend on the
    /// choice as a whole, such as headers).
    public struct ModelSizing {
        /// `matrices` × `configs`.
        public let matrixBytes: [[Int64]]
        public let size: ([Int]) throws -> Size

        public init(matrixBytes: [[Int64]], size: @escaping ([Int]) throws -> Size) {
            self.matrixBytes = matrixBytes
            self.size = size
        }
    }

    /// For a table without a checkpoint (a costs file): each matrix at its bits rounded up to a
    /// byte, `fixedBytes` for everything else, no files to add headers.
    public func payloadSizing(fixedBytes: Int64) -> ModelSizing {
        let bytes = zip(cost, numel).map { _, n in
            bits.map { b in (BitAllocation.Item(error: 0, bitsPerParameter: b, parameters: n).weight + Self.weightPerByte - 1) / Self.weightPerByte }
        }
        return ModelSizing(matrixBytes: bytes) { choice in
            Size(quantized: zip(bytes, choice).reduce(0) { $0 + $1.0[$1.1] }, lowRank: 0, fixed: fixedBytes, headers: 0)
        }
    }

    /// Integer weight units per byte: 8 bits of 2^14 units each.
    static let weightPerByte = Int64(8 * BitAllocation.Item.bitScale)

    /// The memory planner's answer: the least error whose model fits.
    public struct MemoryPlan: Sendable {
        public let target: Int64
        /// Its budget is the average bits per parameter of the choice.
        public let allocation: Allocation
        /// The exact size of the chosen model.
        public let size: Size
        /// True when the least error of every matrix fits (the target holds more).
        public let unconstrained: Bool
    }

    /// The least error whose model fits in `bytes`: the ILP over the matrices' bytes, the rest of
    /// the size first taken as the smallest model's. Headers grow a little with the choice (longer
    /// dtype names and offsets), so while the exact size is over, the capacity shrinks by the
    /// excess and the ILP runs again. The capacity never falls below what the largest headers
    /// leave, so the plan errs no more than the best choice that fits with them; the loop ends at
    /// the latest at the smallest model, which fits.
    public func plan(memory bytes: Int64, sizing: ModelSizing, timeLimit: TimeInterval = 60) throws -> MemoryPlan {
        let weights = sizing.matrixBytes
        let least = weights.reduce(0) { $0 + $1.min()! }, most = weights.reduce(0) { $0 + $1.max()! }
        func attempt(_ capacity: Int64) throws -> (allocation: Allocation, size: Size) {
            let a = try solve(weights: weights, capacity: capacity, timeLimit: timeLimit)
            return (a, try sizing.size(a.choice))
        }
        // Every matrix at its fewest bytes (of equal ones, the least error).
        let smallest = try attempt(least)
        guard smallest.size.total <= bytes else { throw Failure.memoryTooSmall(target: bytes, minimum: smallest.size.total) }
        var capacity = min(most, least + bytes - smallest.size.total)
        while capacity > least {
            let (a, s) = try attempt(capacity)
            if s.total <= bytes { return MemoryPlan(target: bytes, allocation: a, size: s, unconstrained: capacity == most) }
            capacity = max(least, capacity - (s.total - bytes))
        }
        return MemoryPlan(target: bytes, allocation: smallest.allocation, size: smallest.size, unconstrained: least == most)
    }

    /// The least error with Σ weights ≤ `capacity` (weights `matrices` × `configs`); its budget is
    /// the choice's average bits.
    func solve(weights: [[Int64]], capacity: Int64, timeLimit: TimeInterval) throws -> Allocation {
        let classes = zip(cost, weights).map { errors, w in zip(errors, w).map { BitAllocation.Item(error: $0, weight: $1) } }
        let start = DispatchTime.now().uptimeNanoseconds
        let s = try BitAllocation.solve(classes, capacity: capacity, timeLimit: timeLimit)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        let average = averageBits(s.choice)
        return Allocation(budget: average, choice: s.choice, error: s.error, lowerBound: s.lowerBound, optimal: s.optimal,
                          nodes: s.nodes, seconds: seconds, averageBits: average)
    }

    /// Σ bits · numel / Σ numel of a choice.
    func averageBits(_ choice: [Int]) -> Double {
        zip(choice, numel).reduce(0.0) { $0 + bits[$1.0] * Double($1.1) } / Double(parameters)
    }
}

extension AllocationTable {
    /// Reads `lqlora allocate --costs` JSON: {"numel": [m], "bits": [k], "cost": [[k] × m]} with
    /// optional "budget", "names" [m], "configs" [k] and "fixed_bytes" (what else the model stores,
    /// for a memory target). Returns the table, the file's budget and fixed bytes.
    public static func load(costs path: String) throws -> (table: AllocationTable, budget: Double?, fixedBytes: Int64) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Failure.unreadable(path: path, detail: "cannot read (\(error.localizedDescription))")
        }
        // Python's json writes NaN and Infinity bare, which JSON lacks: read them as strings, so that
        // the value check below names the entry.
        let object = (try? JSONSerialization.jsonObject(with: data)) ?? (try? JSONSerialization.jsonObject(with: Data(
            String(decoding: data, as: UTF8.self).replacingOccurrences(of: #"(?<![\w"])(-?Infinity|NaN)(?![\w"])"#, with: "\"$1\"",
                                                                       options: .regularExpression).utf8)))
        guard let root = object as? [String: Any] else { throw Failure.malformed(path: path, detail: "not a JSON object") }
        let known = ["numel", "bits", "cost", "budget", "names", "configs", "fixed_bytes"]
        if let unknown = root.keys.sorted().first(where: { !known.contains($0) }) {
            throw Failure.malformed(path: path, detail: "unknown key \"\(unknown)\" (known: \(known.joined(separator: ", ")))")
        }
        func numbers(_ value: Any?, _ what: String) throws -> [Double] {
            guard let list = value as? [Any] else { throw Failure.malformed(path: path, detail: "\"\(what)\" must be a list of numbers") }
            return try list.enumerated().map { i, v in
                if let special = v as? String, let value = ["NaN": Double.nan, "Infinity": .infinity, "-Infinity": -.infinity][special] {
                    return value
                }
                guard let n = v as? NSNumber else {
                    throw Failure.malformed(path: path, detail: "\"\(what)\"[\(i)] is not a number")
                }
                return n.doubleValue
            }
        }
        guard root["numel"] != nil, root["bits"] != nil, root["cost"] != nil else {
            throw Failure.malformed(path: path, detail: "needs \"numel\", \"bits\" and \"cost\"")
        }
        let numel = try numbers(root["numel"], "numel")
        let bits = try numbers(root["bits"], "bits")
        guard let rows = root["cost"] as? [Any] else { throw Failure.malformed(path: path, detail: "\"cost\" must be a list of rows") }
        let cost = try rows.enumerated().map { i, row in try numbers(row, "cost[\(i)]") }
        let names = try (root["names"]).map { v -> [String] in
            guard let s = v as? [String] else { throw Failure.malformed(path: path, detail: "\"names\" must be a list of strings") }
            return s
        } ?? numel.indices.map { "matrix \($0)" }
        let configs = try (root["configs"]).map { v -> [String] in
            guard let s = v as? [String] else { throw Failure.malformed(path: path, detail: "\"configs\" must be a list of strings") }
            return s
        } ?? bits.indices.map { "config \($0)" }
        if let i = numel.firstIndex(where: { $0 != $0.rounded() || abs($0) > 1e15 }) {
            throw Failure.malformed(path: path, detail: "\"numel\"[\(i)] = \(numel[i]) is not a whole number of parameters")
        }
        let budget = try root["budget"].map { try numbers([$0], "budget")[0] }
        let fixed = try root["fixed_bytes"].map { try numbers([$0], "fixed_bytes")[0] } ?? 0
        guard fixed >= 0, fixed == fixed.rounded() else { throw Failure.malformed(path: path, detail: "\"fixed_bytes\" must be a whole number of bytes") }
        let table = try AllocationTable(matrices: names, numel: numel.map { Int64($0) }, configs: configs, bits: bits, cost: cost, source: path)
        return (table, budget, Int64(fixed))
    }

    /// The error table kept in an `--ilp-cache` file (no checkpoint needed): the table of every
    /// matrix under `optionsKey` (ErrorTableCache.optionsKey; with `fisherWeighted`, the one
    /// Fisher-weighted table of that rank and SVD), over `grid`'s configurations, or when nil over
    /// the full grid if every matrix has it and else the compact one. Matrices in `order` when
    /// given (checkpoint order), else by name.
    public static func load(cache path: String, rank: Int, svd: Decomposition.SVDMethod, fisherWeighted: Bool,
                            grid: ErrorTable.Grid?, order: [String]? = nil) throws -> AllocationTable {
        let cache = try ErrorTableCache.load(path: path)
        guard !cache.matrices.isEmpty else { throw Failure.malformed(path: path, detail: "no matrices (is it an --ilp-cache file?)") }
        let key = ErrorTableCache.optionsKey(rank: rank, svd: svd, fisher: nil)
        let prefix = String(key.dropLast("none".count))
        let names = (order ?? cache.matrices.keys.sorted()).filter { cache.matrices[$0] != nil }
        var tables: [[String: Double]] = []
        for name in names {
            let m = cache.matrices[name]!
            let keys = m.tables.keys.filter { fisherWeighted ? $0.hasPrefix(prefix) && $0 != key : $0 == key }.sorted()
            guard keys.count == 1 else {
                throw Failure.noTable(path: path, matrix: name, key: fisherWeighted ? prefix + "<a Fisher file>" : key,
                                      available: keys.count > 1 ? keys : m.tables.keys.sorted())
            }
            tables.append(m.tables[keys[0]]!)
        }
        let full = ErrorTable.candidates(.full)
        let chosen = grid ?? (tables.allSatisfy { t in full.allSatisfy { t[$0.name] != nil } } ? .full : .compact)
        let configs = ErrorTable.candidates(chosen)
        for (name, t) in zip(names, tables) {
            let missing = configs.map(\.name).filter { t[$0] == nil }
            if !missing.isEmpty { throw Failure.incompleteGrid(path: path, matrix: name, grid: chosen.rawValue, missing: missing) }
        }
        var shapes: [[Int]] = []
        for name in names {
            guard let shape = SafeTensorsFile.shape(ofFingerprint: cache.matrices[name]!.weights), shape.count == 2 else {
                throw Failure.malformed(path: path, detail: "'\(name)': no [rows, cols] in its fingerprint \(cache.matrices[name]!.weights)")
            }
            shapes.append(shape)
        }
        return try AllocationTable(matrices: names, numel: shapes.map { Int64($0[0] * $0[1]) }, shapes: shapes,
                                   configs: configs.map(\.name), bits: configs.map(\.bitsPerParameter),
                                   cost: tables.map { t in configs.map { t[$0.name]! } }, source: path)
    }
}
