import ArgumentParser
import Foundation
import LQFormats
import LQLoRA
import LQModel
import LQQuant

extension LQLoRAPipeline.Method: ExpressibleByArgument {}

/// `lqlora allocate`: the bit-allocation ILP on its own, over a costs file or the error table of an
/// `--ilp-cache`, for one budget, a curve of budgets or a memory target.
struct Allocate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Choose each matrix's configuration under a budget, a range of budgets or a memory target (exact ILP).",
        discussion: """
        The instance is a costs file, {"numel": [m], "bits": [k], "cost": [[k] x m], "budget": b} (bits per
        parameter of each configuration, each matrix's cost under each; optional "names" [m], "configs" [k] and
        "fixed_bytes", the size of everything else for --memory), or the error table an --ilp-cache of
        `quantize --method lq-lora|qlora-ilp` holds (no checkpoint needed, except for --memory, which sizes what
        quantize would write for --model). --budget prints the choice, its total error, the lower bound and
        the status (optimal: no choice better by a relative 1e-9 exists); --budgets the trade-off curve (--plot
        draws it); --memory the least error whose weight files fit (model.safetensors with its headers,
        codebooks and scales, and the adapter's low-rank parts in fp32 as written; config and tokenizer files
        are not counted) and their exact size; with --costs, each matrix at its bits rounded up to a byte plus
        fixed_bytes.
        """)

    @Option(help: "A JSON instance: numel, bits, cost (and optionally budget, names, configs, fixed_bytes).")
    var costs: String?

    @Option(help: "An --ilp-cache file written by quantize --method lq-lora|qlora-ilp.")
    var ilpCache: String?

    @Option(parsing: .unconditional, help: "Average bits per parameter of the quantized parts.")
    var budget: Double?

    @Option(help: "Budgets FROM:TO:STEP (e.g. 2.25:4.5:0.125) or a comma-separated list: the trade-off curve.")
    var budgets: String?

    @Option(help: "A size the weight files must fit, e.g. 2GiB, 1.5GB, 700MiB: the least error that fits.")
    var memory: ByteSize?

    @Option(help: "--ilp-cache: the checkpoint it was made for (matrices in its order; --memory sizes its quantized output).")
    var model: String?

    @Option(help: "--ilp-cache: lq-lora (the table after removing the rank --rank part; default) or qlora-ilp (rank 0).")
    var method: LQLoRAPipeline.Method?

    @Option(parsing: .unconditional, help: "--ilp-cache, lq-lora: the rank of the table and of the low-rank part (default 64).")
    var rank: Int?

    @Option(help: "--ilp-cache: the SVD the table was made with, randomized or full (default randomized).")
    var svd: Decomposition.SVDMethod?

    @Flag(help: "--ilp-cache: the Fisher-weighted table (quantize --fisher).")
    var fisherWeighted = false

    @Option(help: "--ilp-cache: full (432) or compact (144); default full when every matrix has it, else compact.")
    var grid: ErrorTable.Grid?

    @Option(help: "With --budgets: write the curve (total error against bits per parameter) as an SVG file.")
    var plot: String?

    @Option(parsing: .unconditional, help: "Seconds the solver may search each budget before reporting its gap (default 60).")
    var ilpTime: Double = 60

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (costs == nil) != (ilpCache == nil) else { throw ValidationError("give one of --costs FILE and --ilp-cache FILE") }
        let targets = [budget != nil, budgets != nil, memory != nil].filter { $0 }.count
        guard targets <= 1 else { throw ValidationError("give one of --budget, --budgets and --memory") }
        if ilpCache != nil && targets == 0 { throw ValidationError("--ilp-cache needs --budget, --budgets or --memory") }
        if costs != nil {
            let cacheOnly: [(String, Bool)] = [("--model", model != nil), ("--method", method != nil), ("--rank", rank != nil),
                                               ("--svd", svd != nil), ("--fisher-weighted", fisherWeighted), ("--grid", grid != nil)]
            if let (option, _) = cacheOnly.first(where: \.1) { throw ValidationError("\(option) applies to --ilp-cache, not --costs") }
        }
        if method == .qloraILP && rank != nil { throw ValidationError("--rank does not apply to --method qlora-ilp (its table has no low-rank part)") }
        if let rank, rank < 1 { throw ValidationError("--rank must be positive") }
        if ilpCache != nil && memory != nil && model == nil {
            throw ValidationError("--memory with --ilp-cache needs --model DIR, to size the files quantize would write")
        }
        if plot != nil && budgets == nil { throw ValidationError("--plot draws the curve of --budgets") }
        if let budgets { _ = try Self.parseBudgets(budgets) }
        guard ilpTime > 0 else { throw ValidationError("--ilp-time must be positive") }
    }

    /// "2.25:4.5:0.125" (both ends included) or "2.5,2.75,3".
    static func parseBudgets(_ text: String) throws -> [Double] {
        let range = text.split(separator: ":", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        if range.count == 3 {
            guard let from = range[0], let to = range[1], let step = range[2], step > 0, to >= from, (to - from) / step < 10_000 else {
                throw ValidationError("--budgets \(text): FROM:TO:STEP needs numbers with FROM ≤ TO and STEP > 0")
            }
            return (0...Int(((to - from) / step + 1e-9).rounded(.down))).map { from + Double($0) * step }
        }
        let list = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { throw ValidationError("--budgets \(text): FROM:TO:STEP or a comma-separated list of numbers") }
        return list.map { $0! }
    }

    func run() throws {
        try CommandFailure.exits("allocate") { try allocate() }
    }

    /// The table, the costs file's budget, the planner's sizes (for --memory) and the low-rank rank.
    func load() throws -> (table: AllocationTable, budget: Double?, sizing: AllocationTable.ModelSizing?, rank: Int) {
        if let costs {
            let (table, budget, fixed) = try AllocationTable.load(costs: costs)
            return (table, budget, table.payloadSizing(fixedBytes: fixed), 0)
        }
        let rank = (method ?? .lqLora) == .lqLora ? (self.rank ?? 64) : 0
        let checkpoint = try model.map { try Checkpoint(path: $0) }
        let table = try AllocationTable.load(cache: ilpCache!, rank: rank, svd: svd ?? .randomized, fisherWeighted: fisherWeighted,
                                             grid: grid, order: checkpoint?.tensorNames)
        var sizing: AllocationTable.ModelSizing?
        if let checkpoint {
            let cache = try ErrorTableCache.load(path: ilpCache!)
            if let name = cache.matrices.keys.sorted().first(where: { !checkpoint.contains($0) }) {
                throw CLIError("\(ilpCache!) holds '\(name)', which \(checkpoint.path) lacks: it was made for another model")
            }
            for (name, shape) in zip(table.matrices, table.shapes!) where try checkpoint.entry(name).shape != shape {
                throw CLIError("\(ilpCache!) holds '\(name)' as \(shape), \(checkpoint.path) as \(try checkpoint.entry(name).shape): it was made for another model")
            }
            let configs = try table.configs.map { name in
                guard let c = QuantConfig.parse(name) else { throw CLIError("\(ilpCache!) names an unknown configuration '\(name)'") }
                return c
            }
            sizing = try LQLoRAPipeline.outputSizing(checkpoint: checkpoint, matrices: table.matrices, configs: configs, rank: rank)
        }
        return (table, nil, sizing, rank)
    }

    func allocate() throws {
        let (table, fileBudget, sizing, rank) = try load()
        if let memory, let sizing {
            let plan = try table.plan(memory: memory.bytes, sizing: sizing, timeLimit: ilpTime)
            return try report(table, plan.allocation, rank: rank, plan: plan)
        }
        if let budgets {
            let list = try Self.parseBudgets(budgets)
            let curve = try list.map { try table.solve(budget: $0, timeLimit: ilpTime) }
            return try report(table, curve: curve, rank: rank)
        }
        guard let budget = budget ?? fileBudget else {
            throw ValidationError("no budget: give --budget, --budgets or --memory, or \"budget\" in \(costs!)")
        }
        try report(table, try table.solve(budget: budget, timeLimit: ilpTime), rank: rank, plan: nil)
    }

    /// One allocation's summary (JSON keys as quant_report.json's solver block says them).
    struct Summary: Encodable {
        let budget: Double
        let status: String
        let objective: Double
        let lowerBound: Double
        let relativeGap: Double
        let seconds: Double
        let nodes: Int
        let averageBits: Double
        let averageBitsWithLowrank: Double?
        let histogram: [String: Int]

        enum CodingKeys: String, CodingKey {
            case budget, status, objective, seconds, nodes, histogram
            case lowerBound = "lower_bound", relativeGap = "relative_gap", averageBits = "average_bits"
            case averageBitsWithLowrank = "average_bits_with_lowrank"
        }
    }

    func summary(_ table: AllocationTable, _ a: AllocationTable.Allocation, rank: Int) -> Summary {
        Summary(budget: a.budget, status: a.optimal ? "optimal" : "time limit", objective: a.error, lowerBound: a.lowerBound,
                relativeGap: a.relativeGap, seconds: a.seconds, nodes: a.nodes, averageBits: a.averageBits,
                averageBitsWithLowrank: rank > 0 ? try? table.averageBitsWithLowRank(a, rank: rank) : nil,
                histogram: Dictionary(uniqueKeysWithValues: table.histogram(a).map { ($0.config, $0.count) }))
    }

    struct Row: Encodable {
        let matrix: String
        let config: String
        let bits: Double
        let error: Double
    }

    struct Single: Encodable {
        let allocation: Summary
        let memory: LQLoRAPipeline.Report.Memory?
        let choice: [Row]

        func encode(to encoder: Encoder) throws {
            // The summary's keys at the top level, beside "choice" and "memory".
            try allocation.encode(to: encoder)
            enum Keys: String, CodingKey { case choice, memory }
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(choice, forKey: .choice)
            try c.encodeIfPresent(memory, forKey: .memory)
        }
    }

    func report(_ table: AllocationTable, _ a: AllocationTable.Allocation, rank: Int, plan: AllocationTable.MemoryPlan?) throws {
        let rows = table.matrices.indices.map { i in
            Row(matrix: table.matrices[i], config: table.configs[a.choice[i]], bits: table.bits[a.choice[i]], error: table.cost[i][a.choice[i]])
        }
        let s = summary(table, a, rank: rank)
        let memory = plan.map(LQLoRAPipeline.Report.Memory.init)
        if json {
            print(JSONText.serialize(try JSONTree.encode(Single(allocation: s, memory: memory, choice: rows))))
            return
        }
        if let memory { print(memory.summary(budget: a.budget)) }
        print("\(table.matrices.count) matrices × \(table.configs.count) configurations, "
              + String(format: "budget %.4f: objective %.10g, lower bound %.10g, %@ (relative gap %.1e) in %.3f s",
                       a.budget, a.error, a.lowerBound, s.status, a.relativeGap, a.seconds))
        print(String(format: "  %.4f bits per parameter", a.averageBits)
              + (s.averageBitsWithLowrank.map { String(format: ", %.4f with the rank-%d low-rank part at 16 bits", $0, rank) } ?? ""))
        print("  configurations: " + table.histogram(a).map { "\($0.count) × \($0.config)" }.joined(separator: ", "))
        print(Format.table(header: ["matrix", "config", "bits", "error"],
                           rows: rows.map { [$0.matrix, $0.config, String(format: "%.4f", $0.bits), String(format: "%.6g", $0.error)] },
                           rightAligned: [2, 3]))
    }

    /// The error of one configuration everywhere (NF4 and NF3 as QLoRA stores them), where the table has it.
    static func uniformPoints(_ table: AllocationTable) -> [(label: String, bits: Double, error: Double)] {
        [(4, "NF4"), (3, "NF3")].compactMap { bits, label in
            let names = ["fp32", "bf16"].map { "nf\(bits)-b64-s8g256-\($0)" }
            guard let j = names.lazy.compactMap({ table.configs.firstIndex(of: $0) }).first else { return nil }
            return ("\(label) everywhere (\(table.configs[j]))", table.bits[j], table.cost.reduce(0) { $0 + $1[j] })
        }
    }

    struct Curve: Encodable {
        struct Point: Encodable {
            let label: String
            let bits: Double
            let error: Double
        }
        let curve: [Summary]
        let uniform: [Point]
        let matrices: Int
        let configurations: Int
    }

    func report(_ table: AllocationTable, curve: [AllocationTable.Allocation], rank: Int) throws {
        let uniform = Self.uniformPoints(table)
        if let plot {
            let series: [SVGPlot.Series] = [
                .init(label: "optimal allocation", color: "#1f77b4", style: .line, points: curve.map { ($0.averageBits, $0.error) }),
                .init(label: "one configuration everywhere", color: "#d62728", style: .points, points: uniform.map { ($0.bits, $0.error) },
                      pointLabels: uniform.map { String($0.label.prefix(3)) }),
            ]
            let title = "lqlora allocate: \(table.matrices.count) matrices × \(table.configs.count) configurations"
            try Data(SVGPlot.svg(series: series, title: title, x: .init(label: "bits per parameter (quantized parts)", fromZero: false),
                                 yLabel: "total error").utf8).writeAtomically(to: plot)
        }
        if json {
            print(JSONText.serialize(try JSONTree.encode(Curve(curve: curve.map { summary(table, $0, rank: rank) },
                                                               uniform: uniform.map { .init(label: $0.label, bits: $0.bits, error: $0.error) },
                                                               matrices: table.matrices.count, configurations: table.configs.count))))
            return
        }
        print("\(table.matrices.count) matrices × \(table.configs.count) configurations")
        let rows = curve.map { a -> [String] in
            let s = summary(table, a, rank: rank)
            // Code widths (the name up to its first "-": nf2, nf3, ...) and how many matrices took each.
            var widths: [String: Int] = [:]
            for j in a.choice { widths[String(table.configs[j].split(separator: "-").first ?? ""), default: 0] += 1 }
            return [String(format: "%.4f", a.budget), String(format: "%.6g", a.error), String(format: "%.4f", a.averageBits),
                    s.averageBitsWithLowrank.map { String(format: "%.4f", $0) } ?? "-", s.status, String(format: "%.3f", a.seconds),
                    widths.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")]
        }
        print(Format.table(header: ["budget", "total error", "bits", "bits with low-rank", "status", "solve s", "matrices per code width"],
                           rows: rows, rightAligned: [0, 1, 2, 3, 5]))
        for u in uniform { print(String(format: "%@: %.4f bits, total error %.6g", u.label, u.bits, u.error)) }
        if let plot { print("curve written to \(plot)") }
    }
}

extension LQLoRAPipeline.Report.Memory {
    /// What the planner chose and the exact size by part, as quantize and allocate print it.
    func summary(budget: Double) -> String {
        func b(_ n: Int64) -> String { Format.grouped(Int(n)) }
        let choice = unconstrained ? "every matrix at its least error (the target holds more)" : "the least error whose weight files fit"
        return String(format: "--memory %@ (%@ bytes): budget %.4f bits per parameter, %@", Format.bytes(Int(target)), b(target), budget, choice)
            + "\n  weight files \(b(bytes)) bytes (\(Format.bytes(Int(bytes)))) = quantized \(b(quantized))"
            + (lowRank > 0 ? " + low-rank parts (\(PEFTAdapter.storedDType.rawValue)) \(b(lowRank))" : "")
            + " + stored unchanged \(b(fixed)) + headers \(b(headers))"
    }
}
