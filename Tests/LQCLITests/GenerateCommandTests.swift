import Foundation
import Testing

/// `lqlora generate` (greedy) against transformers' generate(do_sample=False), with and without the adapter.
struct GenerateCommandTests {
    @Test(builtBinary)
    func greedyContinuationMatchesTransformers() throws {
        let cases = CLI.oracles["generate"] as! [[String: Any]]
        #expect(cases.count == 2)
        for c in cases {
            let prompt = c["prompt"] as! String
            let out = try CLI.succeed(["generate", "--model", CLI.model, "--prompt", prompt, "--max-tokens", String(c["max_tokens"] as! Int),
                                       "--temperature", "0"] + (c["adapter"] as! Bool ? ["--adapter", CLI.adapter] : []))
            #expect(out == (c["text"] as! String) + "\n", "\(prompt.debugDescription): \(out.debugDescription)")
        }
    }
}

/// `--ignore-eos`: with the model's eos set to the token it picks first, generation stops at once;
/// with the flag it runs to --max-tokens (as llama.cpp's --ignore-eos, for benchmarks).
struct IgnoreEOSTests {
    @Test(builtBinary)
    func generationRunsPastTheEndOfSequenceToken() throws {
        let scratch = TemporaryDirectory()
        defer { scratch.cleanUp() }
        let dir = try CLI.modelCopy(in: scratch)
        let first = try CLI.succeed(["generate", "--model", dir, "--prompt", "the river", "--max-tokens", "1"]).trimmingCharacters(in: .newlines)
        let id = Int(try CLI.succeed(["tokenize", "--model", dir, "--text", first, "--no-special-tokens"]).split(separator: " ")[0]
                     .trimmingCharacters(in: .whitespacesAndNewlines))!
        try CLI.editJSON(dir + "/config.json") { $0["eos_token_id"] = id }
        try? FileManager.default.removeItem(atPath: dir + "/generation_config.json")
        let stopped = try CLI.run(["generate", "--model", dir, "--prompt", "the river", "--max-tokens", "12"])
        let ignored = try CLI.run(["generate", "--model", dir, "--prompt", "the river", "--max-tokens", "12", "--ignore-eos"])
        #expect(stopped.status == 0 && (stopped.stderr.contains(", 1 new tokens") || stopped.stderr.contains(", 0 new tokens")), "\(stopped.stderr)")
        #expect(ignored.status == 0 && ignored.stderr.contains(", 12 new tokens"), "\(ignored.stderr)")
    }
}
