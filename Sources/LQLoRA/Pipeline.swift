import CKernels
import Foundation
import LQDistributed
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
        /// config.json, read before any work so that a bad one is refused early.
        let modelConfig: [String: Any]

        public init(_ options: Options, checkpoint: Checkpoint) throws {
            if options.lowRank {
                guard options.rank >= 1 else { throw Failure.invalid(option: "--rank", detail: "must be positive") }
                guard options.maxIterations >= 1 else { throw Failure.invalid(option: "--max-iters", detail: "must be positive") }
            }
            self.options = options
            self.checkpoint = checkpoint
            matrices = try Targets.select(in: checkpoint, named: options.targets)
            modelConfig = try checkpoint.config() ?? [:]
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
        try run(plan, communicator: SingleProcess(), progress: progress)!
    }

    /// The method over the ranks of a job (`mpirun -np N lqlora quantize`): the error table's
    /// missing rows and then the final decompositions are dealt to the ranks by cost (`deal`), each
    /// computes its own, and rank 0 gathers them, solves the ILP between the two stages and
    /// assembles the result, the same bits as one process computes. Rank 0 gets the result, the
    /// others nil; `progress` reports this rank's own matrices.
    public static func run(_ plan: Plan, communicator: any Communicator, progress: (Event) -> Void = { _ in }) throws -> Result? {
        let start = now()
        let options = plan.options, configs = ErrorTable.candidates(options.grid)
        let (table, fromCache) = try errorTable(plan, configs: configs, communicator: communicator, progress: progress)
        let tableSeconds = now() - start

        // The ILP over every matrix's configurations, under the budget or the memory target, on rank 0.
        let shapes = plan.matrices.map { plan.shapes[$0]! }
        let numels = shapes.map { Int64($0.reduce(1, *)) }
        let solveStart = now()
        let solution = try communicator.onRoot { () -> Solved in
            let allocation = try AllocationTable(matrices: plan.matrices, numel: numels, shapes: shapes,
                                                 configs: configs.map(\.name), bits: configs.map(\.bitsPerParameter), cost: table)
            do {
                if let memory = options.memory {
                    let sizing = try outputSizing(checkpoint: plan.checkpoint, matrices: plan.matrices, configs: configs, rank: options.tableRank)
                    let memoryPlan = try allocation.plan(memory: memory, sizing: sizing, timeLimit: options.ilpTimeLimit)
                    return Solved(memoryPlan.allocation, memory: Report.Memory(memoryPlan))
                }
                return Solved(try allocation.solve(budget: options.budget, timeLimit: options.ilpTimeLimit), memory: nil)
            } catch let AllocationTable.Failure.budgetInfeasible(budget, minimum) {
                throw Failure.budgetInfeasible(budget: budget, minimum: minimum)
            }
        }
        let solveSeconds = now() - solveStart

        // Each matrix with its configuration, on the rank it is dealt to (each runs max_iters
        // iterations of the same shape, so numel is its cost); the low-rank parts become the adapter.
        let finalStart = now()
        let stage: Stage = options.lowRank ? .decompose : .quantize
        let owner = deal(costs: numels.map(Int.init), ranks: communicator.size)
        let mine = plan.matrices.indices.filter { owner[$0] == communicator.rank }
        progress(.began(stage, matrices: mine.count))
        var done: [Int: Final] = [:]
        for (k, i) in mine.enumerated() {
            let config = configs[solution.choice[i]]
            done[i] = try final(plan, index: i, config: config)
            progress(.matrix(stage, index: k, name: plan.matrices[i], config: config))
        }
        if communicator.size > 1 {
            var packet = Packet()
            for i in mine where !communicator.isRoot { try done[i]!.pack(index: i, into: &packet) }
            guard let all = communicator.gather(packet.bytes, root: 0) else { return nil }
            for bytes in all.dropFirst() {
                var reader = Packet.Reader(bytes)
                while !reader.isAtEnd {
                    let (i, f) = try Final.unpack(&reader, plan: plan, configs: configs, choice: solution.choice)
                    done[i] = f
                }
            }
        }
        var quantized: [String: QuantizedWeight] = [:]
        var adapter: [AdapterFactors] = []
        var rows: [Report.Matrix] = []
        var bits = 0.0, params = 0, lowRankParams = 0
        for (i, name) in plan.matrices.enumerated() {
            guard let f = done[i] else { throw ClusterError.malformed(detail: "no rank returned \(name)") }
            quantized[name] = QuantizedWeight(f.q, original: try plan.checkpoint.entry(name).dtype)
            if let factors = f.factors {
                adapter.append(factors)
                lowRankParams += factors.a.count + factors.b.count
            }
            rows.append(f.row)
            bits += f.row.bitsPerParam * Double(f.q.count)
            params += f.q.count
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
            memory: solution.memory,
            seconds: .init(total: now() - start, errorTable: tableSeconds, ilp: solveSeconds, final: finalSeconds),
            parametersQuantized: params, matrices: rows)
        return Result(matrices: plan.matrices, quantized: quantized, adapter: adapter, configurations: configs, errorTable: table, report: report)
    }

    /// What the ILP chose, as rank 0 sends it to the others.
    struct Solved: Codable {
        let choice: [Int]
        let budget: Double
        let error: Double, gap: Double, relativeGap: Double
        let optimal: Bool
        let nodes: Int
        let memory: Report.Memory?

        init(_ s: AllocationTable.Allocation, memory: Report.Memory?) {
            choice = s.choice
            budget = s.budget
            error = s.error
            gap = s.gap
            relativeGap = s.relativeGap
            optimal = s.optimal
            nodes = s.nodes
            self.memory = memory
        }
    }

    /// One matrix done: its quantized part, its factors (lq-lora) and its row of the report.
    struct Final {
        let q: QuantizedMatrix
        let factors: AdapterFactors?
        let row: Report.Matrix

        /// As `unpack` reads it back on rank 0 (the configuration is rank 0's own choice).
        func pack(index: Int, into p: inout Packet) throws {
            p.append(index)
            p.append(Array(try JSONEncoder().encode(row)))
            p.append(q.codes)
            p.append(q.absmax)
            p.append(q.scaleCodes)
            p.append(q.groupAbsmax)
            p.append(q.scaleOffset)
            p.append(factors == nil ? 0 : 1)
            if let factors {
                p.append(UnsafeBufferPointer(factors.a.buffer))
                p.append(UnsafeBufferPointer(factors.b.buffer))
            }
        }

        static func unpack(_ r: inout Packet.Reader, plan: Plan, configs: [QuantConfig], choice: [Int]) throws -> (Int, Final) {
            let i = try r.int()
            guard plan.matrices.indices.contains(i) else { throw ClusterError.malformed(detail: "matrix index \(i) of \(plan.matrices.count)") }
            let name = plan.matrices[i], shape = plan.shapes[name]!
            let row: Report.Matrix
            do { row = try JSONDecoder().decode(Report.Matrix.self, from: Data(try r.bytes())) } catch let e as ClusterError { throw e } catch {
                throw ClusterError.malformed(detail: "\(error)")
            }
            let codes = try r.bytes(), absmax = try r.floats(), scaleCodes = try r.bytes(), groupAbsmax = try r.floats(), offset = try r.float()
            let config = configs[choice[i]]
            guard codes.count == lq_packed_bytes(Int32(config.bits), Int64(shape[0] * shape[1])) else {
                throw ClusterError.malformed(detail: "\(codes.count) code bytes for \(name) \(shape) at \(config.name)")
            }
            let q = QuantizedMatrix(config: config, rows: shape[0], cols: shape[1], codes: codes, absmax: absmax, scaleCodes: scaleCodes,
                                    groupAbsmax: groupAbsmax, scaleOffset: offset)
            var factors: AdapterFactors?
            if try r.int() == 1 {
                let a = try r.floats(), b = try r.floats(), rank = plan.options.rank
                guard a.count == rank * shape[1], b.count == shape[0] * rank else { throw ClusterError.malformed(detail: "factors of \(name)") }
                factors = AdapterFactors(module: String(name.dropLast(".weight".count)), a: Tensor(shape: [rank, shape[1]], values: a),
                                         b: Tensor(shape: [shape[0], rank], values: b))
            }
            return (i, Final(q: q, factors: factors, row: row))
        }
    }

    static func adapterScale(_ options: Options) -> Float { Float(options.alpha / Double(options.rank)) }

    /// Matrix `i` decomposed (lq-lora) or quantized (qlora-ilp) with `config`.
    static func final(_ plan: Plan, index i: Int, config: QuantConfig) throws -> Final {
        let options = plan.options, name = plan.matrices[i]
        let (file, entry) = try plan.checkpoint.locate(name)
        let w = try file.floatTensor(entry)
        var row = Report.Matrix(name: name, shape: entry.shape, config: ConfigReport(config), bitsPerParam: config.bitsPerParameter, relError: 0)
        guard options.lowRank else {
            let q = try Quantizer.quantize(w, config: config, name: name)
            row.relError = q.relativeError(to: w)
            return Final(q: q, factors: nil, row: row)
        }
        let r = try Decomposition.decompose(w, config: config, rank: options.rank, maxIterations: options.maxIterations,
                                            svd: options.svd, fisher: try plan.fisher?.floatTensor(name), name: name)
        row.rank = options.rank
        row.iterations = r.errors.count
        row.iterationErrors = r.errors
        row.bestIteration = r.bestIteration + 1
        row.errorQuantizationOnly = r.quantizationOnlyError
        row.error = r.error
        row.relError = r.q.relativeError(to: Decomposition.subtract(w, matmul(r.l1, r.l2)))
        return Final(q: r.q, factors: peftFactors(r, module: String(name.dropLast(".weight".count)), scale: adapterScale(options)), row: row)
    }

    /// Work dealt to `ranks` by cost: longest first, each to the least loaded rank (ties to the
    /// lower rank; equal costs in their order), so every rank computes the same owners.
    public static func deal(costs: [Int], ranks: Int) -> [Int] {
        var load = [Int](repeating: 0, count: max(ranks, 1)), owner = [Int](repeating: 0, count: costs.count)
        for i in costs.indices.sorted(by: { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }) {
            let r = load.indices.min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 }!
            owner[i] = r
            load[r] += costs[i]
        }
        return owner
    }

    /// Every matrix's error under every configuration, from the cache where it holds them; also
    /// how many came from the cache. Rank 0 reads and writes the cache (after each row it computes,
    /// so a killed run keeps them, and once with the other ranks' rows); the rows it lacks are
    /// dealt by cost (numel × configurations). Only rank 0 gets the table; the others an empty one.
    static func errorTable(_ plan: Plan, configs: [QuantConfig], communicator: any Communicator,
                           progress: (Event) -> Void) throws -> ([[Double]], Int) {
        let options = plan.options
        var cache: ErrorTableCache?
        var keys: [(weights: String, options: String)?] = []
        let configNames = configs.map(\.name)
        // Which rows the cache holds, found on rank 0 (fingerprints: a CRC over the weights, only with a cache to key).
        let cached = try communicator.onRoot { () -> [[Double]?] in
            cache = try options.ilpCache.map { try ErrorTableCache.load(path: $0) }
            keys = try plan.matrices.map { name in
                try options.ilpCache.map { _ in
                    (weights: try plan.checkpoint.fingerprint(name),
                     options: ErrorTableCache.optionsKey(rank: options.tableRank, svd: options.svd, fisher: try plan.fisher?.fingerprint(name)))
                }
            }
            return try zip(plan.matrices, keys).map { name, key in
                guard let path = options.ilpCache, let key else { return nil }
                return try cache?.errors(name, weights: key.weights, options: key.options, configs: configNames, path: path)
            }
        }
        var table = cached.map { $0 ?? [] }
        let missing = plan.matrices.indices.filter { cached[$0] == nil }
        let owner = deal(costs: missing.map { plan.shapes[plan.matrices[$0]]!.reduce(1, *) * configs.count }, ranks: communicator.size)
        // One process reports every matrix, cached or not; a rank of a job its own share.
        let mine = communicator.size == 1 ? Array(plan.matrices.indices) : missing.indices.filter { owner[$0] == communicator.rank }.map { missing[$0] }
        func store(_ i: Int, _ errors: [Double], save: Bool) throws {
            table[i] = errors
            if let path = options.ilpCache, let key = keys[i] {
                cache?.store(plan.matrices[i], weights: key.weights, options: key.options, configs: configNames, errors: errors)
                if save { try cache?.save(path: path) }
            }
        }
        progress(.began(.errorTable, matrices: mine.count))
        var computed = Packet()
        for (k, i) in mine.enumerated() {
            let name = plan.matrices[i]
            if cached[i] == nil {
                let errors = try ErrorTable.errors(try plan.checkpoint.floatTensor(name), configs: configs, rank: options.tableRank,
                                                   fisher: try plan.fisher?.floatTensor(name), svd: options.svd, name: name)
                if communicator.isRoot {
                    try store(i, errors, save: true)
                } else {
                    computed.append(i)
                    computed.append(errors)
                }
            }
            progress(.matrix(.errorTable, index: k, name: name, config: nil))
        }
        if communicator.size > 1, let all = communicator.gather(computed.bytes, root: 0) {
            for bytes in all.dropFirst() {
                var reader = Packet.Reader(bytes)
                while !reader.isAtEnd {
                    let i = try reader.int(), errors = try reader.doubles()
                    guard table.indices.contains(i), errors.count == configs.count else { throw ClusterError.malformed(detail: "error-table row \(i)") }
                    try store(i, errors, save: false)
                }
            }
            if let path = options.ilpCache { try cache?.save(path: path) }
        }
        return (table, plan.matrices.count - missing.count)
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
