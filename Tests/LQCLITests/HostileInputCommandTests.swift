import Foundation
import LQFormats
import LQTestSupport
import Testing

/// A model whose config.json or tokenizer.json cannot give a meaningful result is refused by name
/// when it loads, never trapped on or evaluated to nan (issue 22).
struct HostileModelCommandTests {
    /// The fixture model copied, with `edit` applied to one JSON file.
    func model(_ file: String, _ edit: (inout [String: Any]) -> Void) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: CLI.model) where name != "adapter" {
            try FileManager.default.copyItem(atPath: CLI.model + "/" + name, toPath: dir.file(name))
        }
        var json = try CLI.jsonFile(dir.file(file))
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir.file(file)))
        return dir
    }

    @Test(builtBinary)
    func configValuesThatMakeNaNAreNamed() throws {
        for (edit, message) in [({ (j: inout [String: Any]) in j["rms_norm_eps"] = -1 }, "config key 'rms_norm_eps' must be a positive finite number, not -1.0"),
                                ({ (j: inout [String: Any]) in j["rope_parameters"] = ["rope_theta": 0, "rope_type": "default"] },
                                 "config key 'rope_parameters.rope_theta' must be a positive finite number, not 0.0"),
                                ({ (j: inout [String: Any]) in j["eos_token_id"] = 100_000 }, "config key 'eos_token_id' is 100000, outside the vocabulary")] {
            let dir = try model("config.json", edit)
            defer { dir.cleanUp() }
            let r = try CLI.run(["eval", "--model", dir.path, "--data", CLI.text("sample.txt")])
            #expect(r.status == 1 && r.stderr.contains(message) && !r.stdout.contains("nan"), "\(r.stderr)")
        }
    }

    /// NaN weights give no perplexity but an error naming the first weight that holds one.
    @Test(builtBinary)
    func nanWeightsAreNamed() throws {
        let dir = try model("config.json") { _ in }
        defer { dir.cleanUp() }
        let entry = try SafeTensorsFile(path: dir.file("model.safetensors")).entry("model.norm.weight")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("model.safetensors")))
        let at = 8 + Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) + entry.dataRange.lowerBound + 4
        bytes.replaceSubrange(at..<(at + 4), with: withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
        try bytes.write(to: URL(fileURLWithPath: dir.file("model.safetensors")))
        for extra in [[], ["--json"]] {
            let r = try CLI.run(["eval", "--model", dir.path, "--data", CLI.text("sample.txt")] + extra)
            #expect(r.status == 1 && r.stderr.contains("the mean log-likelihood (nan) is not finite: \(dir.path)/model.safetensors: weight 'model.norm.weight' holds nan"),
                    "\(r.stderr)")
            #expect(!r.stdout.contains("nan"))
        }
    }

    @Test(builtBinary)
    func tokenizerIdsBeyondTheEmbeddingAreRefusedAtLoad() throws {
        let vocab = try CLI.jsonFile(CLI.model + "/config.json")["vocab_size"] as! Int
        let dir = try model("tokenizer.json") { j in
            var added = j["added_tokens"] as! [[String: Any]]
            added.append(["id": vocab, "content": "<extra>", "special": true])
            j["added_tokens"] = added
        }
        defer { dir.cleanUp() }
        let message = "\(dir.path)/tokenizer.json has ids up to \(vocab), but config.json's vocab_size is \(vocab): ids from \(vocab) on have no embedding"
        for command in [["eval", "--model", dir.path, "--data", CLI.text("sample.txt")],
                        ["generate", "--model", dir.path, "--prompt", "the <extra>", "--max-tokens", "2"]] {
            let r = try CLI.run(command)
            #expect(r.status == 1 && r.stderr.contains(message), "\(command[0]): \(r.stderr)")
        }
    }
}
