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
