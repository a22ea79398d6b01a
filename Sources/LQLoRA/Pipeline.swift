import Foundation
import LQFormats
import LQQuant
import LQTensor

/// LQ-LoRA and QLoRA-ILP over a checkpoint: an error table per matrix and configuration (cached
/// per matrix under its weights' fingerprint and the options), the ILP's choice under the budget,
/// then each matrix decomposed W ≈ Q + L1·L2 (lq-lora) or quantized (qlora-ilp) with its choice.
/// Nothing is written: the result holds the quantized matrices, the adapter and the report.
public enum LQLoRAPipeline {
    /// The low-rank part of one matrix as PEFT's pair: A = L2/√s, B = L1/√s with s = alpha/rank,
    /// so that s·B·A = L1·L2.
    public struct AdapterFactors: @unchecked Sendable {
        /// The full module path, e.g. "model.layers.0.self_attn.q_proj".
        public let module: String
        public let a: Tensor  // [rank, cols]
        public let b: Tensor  // [rows, rank]
    }

    public struct Result: @unchecked Sendable {
        /// The target weights, in checkpoint order.
        public let matrices: [String]
        /// Each target weight's chosen quantization.
        public let quantized: [String: QuantizedWeight]
        /// One pair per target in `matrices` order (lq-lora); empty for qlora-ilp.
        public let adapter: [AdapterFactors]
        /// The candidate configurations and each matrix's error under each (`matrices` × `configurations`).
        public let configurations: [QuantConfig]
        public let errorTable: [[Double]]
        public var report: Report
    }

    /// The targets and their checks, resolved before any work (so a caller can refuse early, and
    /// only then create its output).
    public struct Plan {
        public let options: Options
        public let checkpoint: Checkpoint
        public let matrices: [String]
        let shapes: [String: [Int]]
        let fisher: Checkpoint?

        public init(_ options: Options, checkpoint: Checkpoint) throws {
            if options.lowRank {
                guard options.rank >= 1 else { throw Failure.invalid(option: "--rank", detail: "must be positive") }
                guard options.maxIterations >= 1 else { throw Failure.invalid(option: "--max-iters", detail: "must be positive") }
            }
            self.options = options
            self.checkpoint = checkpoint
            matrices = try Targets.select(in: checkpoint, named: options.targets)
            fisher = try options.fisher.map { try Checkpoint(path: $0) }
            var shapes: [String: [Int]] = [:]
            for name in matrices {
                let e = try checkpoint.entry(name)
                if options.lowRank && options.rank >= min(e.shape[0], e.shape[1]) {
                    throw Failure.rankTooLarge(rank: options.rank, tensor: name, shape: e.shape)
                }
                if let fisher {
                    guard fisher.contains(name) else { throw Failure.fisherMissing(path: fisher.path, tensor: name) }
                    let f = try fisher.entry(name)
                    guard f.shape == e.shape else { throw Failure.fisherShape(path: fisher.path, tensor: name, fisher: f.shape, weight: e.shape) }
                }
                shapes[name] = e.shape
            }
            self.shapes = shapes
        }
    }

    public static func run(_ options: Options, checkpoint: Checkpoint, progress: (Event) -> Void = { _ in }) throws -> Result {
        try run(Plan(options, checkpoint: checkpoint), progress: progress)
    }

    public static func run(_ plan: Plan, progress: (Event) -> Void = { _ in }) throws -> Result {
        let start = now()
        let options = plan.options, configs = ErrorTable.candidates(options.grid)
        let (table, fromCache) = try errorTable(plan, configs: configs, progress: progress)
        let tableSeconds = now() - start

        // The ILP over every matrix's configurations, under the budget or the memory target.
        let shapes = plan.matrices.map { plan.shapes[$0]! }
        let allocation = try AllocationTable(matrices: plan.matrices, numel: shapes.map { Int64($0.reduce(1, *)) }, shapes: shapes,
                                             configs: configs.map(\.name), bits: configs.map(\.bitsPerParameter), cost: table)
        let solveStart = now()
        var memoryPlan: AllocationTable.MemoryPlan?
        let solution: AllocationTable.Allocation
        do {
            if let memory = options.memory {
                let targets = Set(plan.matrices)
                let fixed = plan.checkpoint.entries.filter { !targets.contains($0.name) }.reduce(Int64(0)) { $0 + Int64($1.byteCount) }
                memoryPlan = try allocation.plan(memory: memory, rank: options.tableRank, fixedBytes: fixed, timeLimit: options.ilpTimeLimit)
                solution = memoryPlan!.allocation
            } else {
                solution = try allocation.solve(budget: options.budget, timeLimit: options.ilpTimeLimit)
            }
        } catch let AllocationTable.Failure.budgetInfeasible(budget, minimum) {
            throw Failure.budgetInfeasible(budget: budget, minimum: minimum)
        }
        let solveSeconds = now() - solveStart

        // Each matrix with its configuration; the low-rank parts become the adapter.
        let finalStart = now()
        let stage: Stage = options.lowRank ? .decompose : .quantize
        progress(.began(stage, matrices: plan.matrices.count))
        var quantized: [String: QuantizedWeight] = [:]
        var adapter: [AdapterFactors] = []
        var rows: [Report.Matrix] = []
        var bits = 0.0, params = 0, lowRankParams = 0
        for (i, name) in plan.matrices.enumerated() {
            let config = configs[solution.choice[i]]
            let (file, entry) = try plan.checkpoint.locate(name)
            let w = try file.floatTensor(entry)
            var row = Report.Matrix(name: name, shape: entry.shape, config: ConfigReport(config), bitsPerParam: config.bitsPerParameter, relError: 0)
            if options.lowRank {
                let r = try Decomposition.decompose(w, config: config, rank: options.rank, maxIterations: options.maxIterations,
                                                    svd: options.svd, fisher: try plan.fisher?.floatTensor(name), name: name)
                quantized[name] = QuantizedWeight(r.q, original: entry.dtype)
                let factors = peftFactors(r, module: String(name.dropLast(".weight".count)), scale: Float(options.alpha / Double(options.rank)))
                adapter.append(factors)
                lowRankParams += factors.a.count + factors.b.count
                row.rank = options.rank
                row.iterations = r.errors.count
                row.iterationErrors = r.errors
                row.bestIteration = r.bestIteration + 1
                row.errorQuantizationOnly = r.quantizationOnlyError
                row.error = r.error
                row.relError = r.q.relativeError(to: Decomposition.subtract(w, matmul(r.l1, r.l2)))
            } else {
                let q = try Quantizer.quantize(w, config: config, name: name)
                quantized[name] = QuantizedWeight(q, original: entry.dtype)
                row.relError = q.relativeError(to: w)
            }
            rows.append(row)
            bits += config.bitsPerParameter * Double(w.count)
            params += w.count
            progress(.matrix(stage, index: i, name: name, config: config))
        }
        let finalSeconds = now() - finalStart

        let total = Double(params)
        let report = Report(
            method: options.method.rawValue, budget: solution.budget, averageBits: bits / total,
            averageBitsWithLowrank: (bits + 16 * Double(lowRankParams)) / total,
            grid: options.grid.rawValue, configurations: configs.count, rank: options.tableRank,
            errorTable: .init(matrices: plan.matrices.count, fromCache: fromCache, svd: options.svd.rawValue, cache: options.ilpCache),
            solver: .init(status: solution.optimal ? "optimal" : "time limit", gap: solution.gap,
                          relativeGap: solution.relativeGap, nodes: solution.nodes, objective: solution.error),
            memory: memoryPlan.map { .init(target: $0.target, bytes: $0.size.total, quantized: $0.size.quantized, lowRank: $0.size.lowRank, fixed: $0.size.fixed) },
            seconds: .init(total: now() - start, errorTable: tableSeconds, ilp: solveSeconds, final: finalSeconds),
            parametersQuantized: params, matrices: rows)
        return Result(matrices: plan.matrices, quantized: quantized, adapter: adapter, configurations: configs, errorTable: table, report: report)
    }

    /// Every matrix's error under every configuration, from the cache where it holds them;
    /// also how many came from the cache.
    static func errorTable(_ plan: Plan, configs: [QuantConfig], progress: (Event) -> Void) throws -> ([[Double]], Int) {
        let options = plan.options
        var cache = try options.ilpCache.map { try ErrorTableCache.load(path: $0) }
        let configNames = configs.map(\.name)
        var table: [[Double]] = []
        var fromCache = 0
        progress(.began(.errorTable, matrices: plan.matrices.count))
        for (i, name) in plan.matrices.enumerated() {
            // Fingerprints (a CRC over the weights) only when there is a cache to key.
            let key = try options.ilpCache.map { _ in
                (weights: try plan.checkpoint.fingerprint(name),
                 options: ErrorTableCache.optionsKey(rank: options.tableRank, svd: options.svd, fisher: try plan.fisher?.fingerprint(name)))
            }
            if let path = options.ilpCache, let key, let cached = try cache?.errors(name, weights: key.weights, options: key.options, configs: configNames, path: path) {
                table.append(cached)
                fromCache += 1
            } else {
                let w = try plan.checkpoint.floatTensor(name)
                let f = try plan.fisher?.floatTensor(name)
                let errors = try ErrorTable.errors(w, configs: configs, rank: options.tableRank, fisher: f, svd: options.svd, name: name)
                table.append(errors)
                if let path = options.ilpCache, let key {
                    cache?.store(name, weights: key.weights, options: key.options, configs: configNames, errors: errors)
                    try cache?.save(path: path)
                }
            }
            progress(.matrix(.errorTable, index: i, name: name, config: nil))
        }
        return (table, fromCache)
    }

    /// L1, L2 as PEFT's B, A: each divided by √scale.
    static func peftFactors(_ r: Decomposition.Result, module: String, scale: Float) -> AdapterFactors {
        let root = scale.squareRoot()
        let a = r.l2.copy(), b = r.l1.copy()
        for k in 0..<a.count { a.pointer[k] /= root }
        for k in 0..<b.count { b.pointer[k] /= root }
        return AdapterFactors(module: module, a: a, b: b)
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
}
