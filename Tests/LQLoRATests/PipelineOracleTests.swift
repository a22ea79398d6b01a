import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// `lqlora quantize --method lq-lora|qlora-ilp` end to end against an independent torch
/// re-implementation of the pipeline (scripts/make-lqlora-fixtures.py): the error table, the
/// configuration the ILP picks for every matrix, each decomposition's iterates and errors, and the
/// logits of the quantized model with and without its adapter (transformers + PEFT).
///
/// Tolerances come from the script's own measurement of fp32 against fp64 SVDs (the JSON's
/// "sensitivity"): without a low-rank part the table has no SVD and must agree to rounding of the
/// sum; with one, single entries move by up to 6e-3 where a scale code flips (nf8) and 3e-4
/// otherwise, while the median entry moves by 5e-7; iterates by 6e-6; logits by 5e-6.
struct PipelineOracleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let model = root + "/Tests/LQModelTests/Fixtures/llama/mha"
    static let fixtures = root + "/Tests/LQLoRATests/Fixtures"

    struct Oracle: Decodable {
        struct Matrix: Decodable {
            let name: String
            let config: String
            let error: Double
            let error_quantization_only: Double
            let rel_error: Double
            let errors: [Double]?
        }
        struct Case: Decodable {
            let method: String
            let budget: Double
            let rank: Int
            let choice_names: [String]
            let objective: Double
            let average_bits: Double
            let average_bits_with_lowrank: Double
            let matrices: [Matrix]
        }
        let matrices: [String]
        let configs: [String]
        let error_tables: [String: [[Double]]]
        let cases: [String: Case]
    }

    static let oracle: Oracle? = try? JSONDecoder().decode(Oracle.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/lqlora-mha.json")))

    static func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    static func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }

    static func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { maxAbsDifference(a, b) }

    @Test(.enabled(if: BuiltCommand.path != nil, "lqlora binary not built beside the tests"),
          arguments: ["lq-lora-2.5", "lq-lora-3.0", "qlora-ilp-2.5", "qlora-ilp-3.0"])
    func pipelineMatchesTheTorchOracle(caseName: String) throws {
        let oracle = try #require(Self.oracle, "Tests/LQLoRATests/Fixtures/lqlora-mha.json (scripts/make-lqlora-fixtures.py)")
        let expected = try #require(oracle.cases[caseName])
        let dir = NSTemporaryDirectory() + "lqlora-oracle-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/q", cachePath = dir + "/cache.json"
        let rank = expected.rank > 0 ? ["--rank", String(expected.rank), "--svd", "full", "--max-iters", "20"] : []
        let r = try BuiltCommand.run(["quantize", "--model", Self.model, "--out", out, "--method", expected.method,
                                      "--budget", String(expected.budget), "--grid", "compact", "--ilp-cache", cachePath] + rank)
        try #require(r.status == 0, "\(r.stderr)")

        // The error table, read back from the cache.
        let cache = try Self.json(cachePath)["matrices"] as! [String: [String: Any]]
        #expect(cache.count == oracle.matrices.count)
        var table: [String: [String: Double]] = [:]
        for name in oracle.matrices {
            let tables = try #require(cache[name]?["tables"] as? [String: [String: Double]], "\(name) not in the cache")
            try #require(tables.count == 1)
            table[name] = tables.values.first!
        }
        try Self.check(caseName, table: table, report: try Self.json(out + "/quant_report.json"), out: out)
    }

    /// The oracle's values against one run's error table (matrix → configuration → error), its
    /// quant_report.json as an object, and the model (with adapter/) it wrote to `out`.
    static func check(_ caseName: String, table ours: [String: [String: Double]], report: [String: Any], out: String) throws {
        let oracle = try #require(Self.oracle, "Tests/LQLoRATests/Fixtures/lqlora-mha.json (scripts/make-lqlora-fixtures.py)")
        let expected = try #require(oracle.cases[caseName])
        let table = try #require(oracle.error_tables[expected.rank > 0 ? "rank\(expected.rank)" : "rank0"])
        #expect(table.count == oracle.matrices.count && ours.count == oracle.matrices.count)
        var deviations: [Double] = []
        for (i, name) in oracle.matrices.enumerated() {
            let ours = try #require(ours[name], "\(name) not in the table")
            #expect(ours.count == oracle.configs.count)
            for (j, config) in oracle.configs.enumerated() {
                let e = try #require(ours[config], "\(name) \(config)")
                let d = relative(e, table[i][j])
                deviations.append(d)
                let bound = expected.rank == 0 ? 1e-9 : config.hasPrefix("nf8") ? 1e-2 : 1e-3
                #expect(d <= bound, "\(name) \(config): \(e) vs torch \(table[i][j])")
            }
        }
        deviations.sort()
        let median = deviations[deviations.count / 2]
        #expect(median <= (expected.rank == 0 ? 1e-12 : 1e-5), "median relative deviation of the table \(median)")

        // The allocation and each matrix's result. A decomposition's iterates follow the oracle's until
        // a code flips (fp32 against fp64 SVD: one 2-bit scale code moves an iterate by up to 5e-4 on
        // this model); from then on the two trajectories are both right but differ, so each matrix is
        // checked tightly up to its first divergence and to 1e-3 after it.
        let rows = report["matrices"] as! [[String: Any]]
        try #require(rows.count == expected.matrices.count)
        var diverged: [String] = []
        for (row, want) in zip(rows, expected.matrices) {
            let name = row["name"] as! String
            #expect(name == want.name)
            #expect((row["config"] as! [String: Any])["name"] as? String == want.config, "\(name)")
            var bound = 1e-5
            if let iterates = want.errors {
                #expect(relative(row["error_quantization_only"] as! Double, want.error_quantization_only) <= 1e-9, "\(name)")
                let ours = row["iteration_errors"] as! [Double]
                #expect(relative(ours[0], iterates[0]) <= 1e-5, "\(name) first iterate \(ours[0]) vs \(iterates[0])")
                for (a, b) in zip(ours, iterates) {
                    if relative(a, b) > bound { bound = 1e-3; diverged.append(name) }
                    #expect(relative(a, b) <= bound, "\(name) iterate \(a) vs \(b)")
                }
                #expect(abs(ours.count - iterates.count) <= (bound > 1e-5 ? 19 : 1), "\(name): \(ours.count) iterations vs \(iterates.count)")
                #expect(relative(row["error"] as! Double, want.error) <= bound, "\(name) error \(row["error"]!) vs \(want.error)")
            }
            #expect(relative(row["rel_error"] as! Double, want.rel_error) <= bound * 10, "\(name) rel_error \(row["rel_error"]!) vs \(want.rel_error)")
        }
        // At most one matrix in a case may take another trajectory; more means the loop itself changed.
        #expect(diverged.count <= 1, "decompositions diverging from the oracle: \(diverged)")
        #expect(relative(report["average_bits"] as! Double, expected.average_bits) <= 1e-12)
        #expect(relative((report["solver"] as! [String: Any])["objective"] as! Double, expected.objective) <= 1e-5)

        // Logits of the quantized base, and with its adapter, against transformers and PEFT: to 1e-4
        // when every decomposition followed the oracle's trajectory; a matrix that took another one
        // moves them by up to 0.03 (measured), still far below what a wrong scale or factor does.
        let logitBound: Float = diverged.isEmpty ? 1e-4 : 0.05
        let logits = try SafeTensorsFile(path: Self.fixtures + "/lqlora-mha-logits.safetensors")
        let ids = try logits.floatTensor("input_ids")
        let tokens = [(0..<ids.count).map { Int(ids.pointer[$0]) }]
        let base = try LlamaModel(directory: out)
        let baseDiff = maxDiff(base.forward(tokens), try logits.floatTensor("logits.\(caseName).base"))
        #expect(baseDiff <= logitBound, "quantized base vs transformers: \(baseDiff)")
        if expected.rank > 0 {
            _ = try base.loadAdapter(directory: out + "/adapter")
            let adapterDiff = maxDiff(base.forward(tokens), try logits.floatTensor("logits.\(caseName).adapter"))
            #expect(adapterDiff <= logitBound, "base + adapter vs PEFT: \(adapterDiff)")
        }
    }
}

/// The same command gives the same bytes on any number of threads (gemm's tiles are fixed by shape).
struct ThreadCountDeterminismTests {
    static let smolLM2 = RealModel.smolLM2

    @Test(.enabled(if: BuiltCommand.path != nil, "lqlora binary not built beside the tests"))
    func outputsDoNotDependOnTheThreadCount() throws {
        let dir = NSTemporaryDirectory() + "lqlora-threads-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var models: [Data] = [], adapters: [Data] = [], evals: [String] = []
        for threads in [1, 2, 3] {
            let out = dir + "/t\(threads)", env = ["LQLORA_NUM_THREADS": String(threads)]
            let q = try BuiltCommand.run(["quantize", "--model", PipelineOracleTests.model, "--out", out, "--method", "lq-lora",
                                          "--budget", "2.5", "--rank", "8", "--grid", "compact"], environment: env)
            try #require(q.status == 0, "\(q.stderr)")
            models.append(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")))
            adapters.append(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter/adapter_model.safetensors")))
            // eval on the real model (its tokenizer), where one is fetched.
            if RealModel.enabled(Self.smolLM2) {
                let e = try BuiltCommand.run(["eval", "--model", Self.smolLM2, "--data", PipelineOracleTests.root + "/data/wikitext-2-raw-test.txt",
                                              "--max-chars", "3000", "--ctx", "128", "--json"], environment: env)
                try #require(e.status == 0, "\(e.stderr)")
                let r = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
                evals.append("\(r["perplexity"]!) \(r["nll"]!)")
            }
        }
        #expect(Set(models).count == 1 && Set(adapters).count == 1, "quantized outputs differ between 1, 2 and 3 threads")
        #expect(Set(evals).count <= 1, "perplexities by thread count: \(evals)")
    }
}

/// The error table on real weights: SmolLM2's first two layers (14 matrices, bf16) against the
/// torch oracle (scripts/make-smollm2-table-fixture.py) on 12 configurations spread over the grid.
/// Without a low-rank part there is no SVD and entries agree to the sum's rounding; with the
/// rank-64 part an fp32 SVD moves single entries by up to 2.2e-4 (measured by the script), so 1e-3.
struct SmolLM2ErrorTableTests {
    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil, "SmolLM2 not converted: run scripts/fetch-smollm2.sh"),
          arguments: ["rank0", "rank64"])
    func tableEntriesMatchTheTorchOracle(table: String) throws {
        let f = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: PipelineOracleTests.fixtures + "/smollm2/error-table.json"))) as! [String: Any]
        let matrices = f["matrices"] as! [String], configs = f["configs"] as! [String]
        let expected = (f["error_tables"] as! [String: [[Double]]])[table]!
        let command = (f["commands"] as! [String: String])[table]!, key = (f["cache_keys"] as! [String: String])[table]!
        let dir = NSTemporaryDirectory() + "lqlora-smol-table-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arguments = command.split(separator: " ").dropFirst().map {
            $0 == "OUT" ? dir + "/out" : $0 == "CACHE.json" ? dir + "/cache.json" : $0 == "models/SmolLM2-135M-Instruct" ? RealModel.smolLM2 : String($0)
        }
        let r = try BuiltCommand.run(arguments)
        try #require(r.status == 0, "\(r.stderr)")
        let cache = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cache.json"))) as! [String: Any])["matrices"] as! [String: [String: Any]]
        #expect(cache.count == matrices.count)
        for (i, name) in matrices.enumerated() {
            let ours = try #require((cache[name]?["tables"] as? [String: [String: Double]])?[key], "\(name) under '\(key)'")
            for (j, config) in configs.enumerated() {
                let e = try #require(ours[config]), want = expected[i][j]
                #expect(abs(e - want) <= (table == "rank0" ? 1e-9 : 1e-3) * want, "\(name) \(config): \(e) vs torch \(want)")
            }
        }
    }
}
