import Foundation
import LQFormats
import LQTestSupport
import Testing

/// Results that cannot mean anything are errors, and a killed run never damages an output.
struct RefusedResultTests {
    @Test(builtBinary)
    func evalOfTooShortATextIsAnError() throws {
        let dir = NSTemporaryDirectory() + "lqlora-short-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data().write(to: URL(fileURLWithPath: dir + "/empty.txt"))
        for extra in [[], ["--json"]] {
            let r = try CLI.run(["eval", "--model", CLI.model, "--data", dir + "/empty.txt"] + extra)
            #expect(r.status == 1 && r.stderr.contains("perplexity needs at least 2") && !r.stdout.contains("nan"), "\(extra): \(r.stdout) \(r.stderr)")
        }
        // One character is two tokens with the BOS this tokenizer adds: one scored token, a result.
        try Data("t".utf8).write(to: URL(fileURLWithPath: dir + "/one.txt"))
        let one = try CLI.json(try CLI.succeed(["eval", "--model", CLI.model, "--data", dir + "/one.txt", "--json"]))
        #expect(one["tokens"] as? Int == 1 && (one["perplexity"] as! Double).isFinite)
    }

    @Test(builtBinary)
    func evalRefusesAContextBeyondTheModelsPositions() throws {
        let r = try CLI.run(["eval", "--model", CLI.model, "--data", CLI.text("sample.txt"), "--ctx", "257"])
        #expect(r.status == 1 && r.stderr.contains("--ctx 257 is above the model's 256 positions"), "\(r.stderr)")
    }

    @Test(builtBinary)
    func generateRefusesAnInfiniteTemperatureAndAnEmptyPrompt() throws {
        let hot = try CLI.run(["generate", "--model", CLI.model, "--prompt", "the", "--temperature", "inf"])
        #expect(hot.status == 64 && hot.stderr.contains("--temperature must be finite"), "\(hot.stderr)")
        // The fixture's tokenizer adds BOS, so an empty prompt still has a position to start from.
        let empty = try CLI.run(["generate", "--model", CLI.model, "--prompt", "", "--max-tokens", "3", "--temperature", "0"])
        #expect(empty.status == 0, "\(empty.stderr)")
    }
}

struct InterruptedOutputTests {
    /// `quantize --overwrite` killed at points through its run: the output is always the complete
    /// old or the complete new model, and the next run removes the killed run's staging directory.
    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil, "SmolLM2 not converted: run scripts/fetch-smollm2.sh"))
    func killedOverwriteLeavesACompleteOutput() throws {
        let dir = NSTemporaryDirectory() + "lqlora-kill-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/q"
        func quantize(_ method: String) -> [String] {
            ["quantize", "--model", RealModel.smolLM2, "--out", out, "--method", method, "--overwrite"]
        }
        func complete() throws -> String {
            let report = try CLI.jsonFile(out + "/quant_report.json")
            let file = try SafeTensorsFile(path: out + "/model.safetensors")
            #expect(file.entries.count > 200 && FileManager.default.fileExists(atPath: out + "/config.json"))
            return report["method"] as! String
        }
        _ = try CLI.succeed(quantize("nf4"))
        #expect(try complete() == "nf4-b64-dq8")
        var methods: Set<String> = []
        for (i, delay) in [0.05, 0.4, 0.9, 1.4, 1.9, 2.4].enumerated() {
            try BuiltCommand.runKilled(quantize(i % 2 == 0 ? "nf3" : "nf4"), after: delay)
            methods.insert(try complete())
        }
        #expect(methods.isSubset(of: ["nf4-b64-dq8", "nf3-b64-s8g256-fp32"]))
        _ = try CLI.succeed(quantize("nf3"))
        #expect(try complete() == "nf3-b64-s8g256-fp32")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != "q" }
        #expect(leftovers.isEmpty, "left beside the output: \(leftovers)")
    }
}
