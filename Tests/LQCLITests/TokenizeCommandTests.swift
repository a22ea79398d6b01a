import Foundation
import Testing

/// `lqlora tokenize` against huggingface `tokenizers` (Tokenizer.encode / decode) on the same tokenizer.json.
struct TokenizeCommandTests {
    static var cases: [[String: Any]] { CLI.oracles["tokenize"] as! [[String: Any]] }

    static func ids(_ stdout: String) -> [Int] {
        stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { Int($0)! }
    }

    @Test(builtBinary)
    func idsMatchTokenizers() throws {
        let texts = Self.cases.filter { $0["text"] != nil }
        #expect(texts.count == 5)
        for c in texts {
            let text = c["text"] as! String
            let withSpecial = try CLI.run(["tokenize", "--model", CLI.model, "--text", text])
            #expect(withSpecial.status == 0, "\(withSpecial.stderr)")
            #expect(Self.ids(withSpecial.stdout) == c["ids"] as! [Int], "\(text.debugDescription)")
            #expect(withSpecial.stderr.contains("\((c["ids"] as! [Int]).count) tokens"))
            let plain = try CLI.succeed(["tokenize", "--model", CLI.model, "--text", text, "--no-special-tokens"])
            #expect(Self.ids(plain) == c["ids_no_special"] as! [Int], "\(text.debugDescription)")
            // --pieces: each id decoded alone, as tokenizers' decode([id]) gives it (Swift-quoted).
            let pieces = try CLI.succeed(["tokenize", "--model", CLI.model, "--text", text, "--pieces"])
            let expected = (c["pieces"] as! [String]).map(\.debugDescription).joined(separator: " ")
            #expect(pieces.trimmingCharacters(in: .newlines) == expected, "\(text.debugDescription)")
        }
    }

    @Test(builtBinary)
    func fileWithMaxChars() throws {
        let c = Self.cases.first { $0["file"] != nil }!
        let out = try CLI.succeed(["tokenize", "--model", CLI.model, "--file", CLI.text(c["file"] as! String),
                                   "--max-chars", String(c["max_chars"] as! Int)])
        #expect(Self.ids(out) == c["ids"] as! [Int])
    }
}

/// A tokenizer with ids past the model's embedding table is refused at load, naming both sizes
/// (eval and generate used to trap in the embedding lookup).
struct VocabularyMismatchTests {
    @Test(builtBinary)
    func tokenizerLargerThanTheModelIsRefused() throws {
        let dir = NSTemporaryDirectory() + "lqlora-vocab-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: CLI.model, toPath: dir)
        let tokenizerPath = dir + "/tokenizer.json"
        var tokenizer = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tokenizerPath))) as! [String: Any]
        tokenizer["added_tokens"] = (tokenizer["added_tokens"] as! [[String: Any]]) + [["id": 150, "content": "<extra>", "special": true]]
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: URL(fileURLWithPath: tokenizerPath))
        let r = try CLI.run(["generate", "--model", dir, "--prompt", "the river", "--max-tokens", "2"])
        #expect(r.status == 1 && r.stderr.contains("ids up to 150") && r.stderr.contains("vocab_size is 128"), "\(r.stderr)")
    }
}
