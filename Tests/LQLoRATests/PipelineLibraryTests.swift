import Foundation
import LQFormats
import LQLoRA
import LQModel
import LQQuant
import Testing

/// LQLoRAPipeline called as a library, without the binary, against the same torch oracle as the
/// command (PipelineOracleTests.check): its error table, the ILP's choice, each decomposition, and
/// the logits of the model and adapter it returns once written (LQLoRAPipeline.write).
struct PipelineLibraryTests {
    @Test(arguments: ["lq-lora-2.5", "lq-lora-3.0", "qlora-ilp-2.5", "qlora-ilp-3.0"])
    func pipelineMatchesTheTorchOracle(caseName: String) throws {
        let oracle = try #require(PipelineOracleTests.oracle, "Tests/LQLoRATests/Fixtures/lqlora-mha.json (scripts/make-lqlora-fixtures.py)")
        let expected = try #require(oracle.cases[caseName])
        var options = LQLoRAPipeline.Options(method: try #require(LQLoRAPipeline.Method(rawValue: expected.method)), budget: expected.budget)
        options.grid = .compact
        if expected.rank > 0 {
            options.rank = expected.rank
            options.svd = .full
            options.maxIterations = 20
        }
        let checkpoint = try Checkpoint(path: PipelineOracleTests.model)
        var events: [LQLoRAPipeline.Event] = []
        let plan = try LQLoRAPipeline.Plan(options, checkpoint: checkpoint)
        let result = try LQLoRAPipeline.run(plan) { events.append($0) }

        // Progress: each stage begins, then reports every matrix in order.
        let n = oracle.matrices.count, last = try #require(oracle.matrices.last)
        #expect(result.matrices == oracle.matrices)
        #expect(events.count == 2 * n + 2)
        #expect(events.first == .began(.errorTable, matrices: n))
        #expect(events[n] == .matrix(.errorTable, index: n - 1, name: last, config: nil))
        let stage: LQLoRAPipeline.Stage = expected.rank > 0 ? .decompose : .quantize
        #expect(events[n + 1] == .began(stage, matrices: n))
        #expect(events.last == .matrix(stage, index: n - 1, name: last, config: result.quantized[last]?.matrix.config))
        #expect(result.adapter.count == (expected.rank > 0 ? n : 0))

        let names = result.configurations.map(\.name)
        let table = Dictionary(uniqueKeysWithValues: zip(result.matrices, result.errorTable.map { Dictionary(uniqueKeysWithValues: zip(names, $0)) }))
        let report = try #require(try JSONTree.encode(result.report) as? [String: Any])
        #expect(report["method"] as? String == expected.method && report["rank"] as? Int == expected.rank)

        let out = NSTemporaryDirectory() + "lqlora-library-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: out) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try LQLoRAPipeline.write(result, plan: plan, to: out)
        try PipelineOracleTests.check(caseName, table: table, report: report, out: out)
    }

    /// Refusals name the option or tensor, before any work.
    @Test func plansRefuseWhatCannotRun() throws {
        let checkpoint = try Checkpoint(path: PipelineOracleTests.model)
        var options = LQLoRAPipeline.Options(method: .lqLora, budget: 3)
        options.rank = 64
        #expect(throws: LQLoRAPipeline.Failure.rankTooLarge(rank: 64, tensor: "model.layers.0.mlp.down_proj.weight", shape: [64, 96])) {
            try LQLoRAPipeline.Plan(options, checkpoint: checkpoint)
        }
        options.rank = 4
        options.targets = ["nope_proj"]
        #expect(throws: Targets.Failure.unmatched(checkpoint: checkpoint.path, target: "nope_proj")) {
            try LQLoRAPipeline.Plan(options, checkpoint: checkpoint)
        }
        options.targets = ["q_proj"]
        options.budget = 1
        #expect(throws: LQLoRAPipeline.Failure.self) { try LQLoRAPipeline.run(options, checkpoint: checkpoint) }
    }
}
