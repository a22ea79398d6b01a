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
        let scratch = TemporaryDirectory()
        defer { scratch.cleanUp() }
        let dir = try CLI.modelCopy(in: scratch)
        try CLI.editJSON(dir + "/tokenizer.json") {
            $0["added_tokens"] = ($0["added_tokens"] as! [[String: Any]]) + [["id": 150, "content": "<extra>", "special": true]]
        }
        let r = try CLI.run(["generate", "--model", dir, "--prompt", "the river", "--max-tokens", "2"])
        #expect(r.status == 1 && r.stderr.contains("ids up to 150") && r.stderr.contains("vocab_size is 128"), "\(r.stderr)")
    }
}

/// A tokenizer.json whose Split pattern backtracks without bound: generate refuses the prompt that
/// sets it off, naming the file and the pattern, instead of hanging (NSRegularExpression has no limit).
struct RunawayPatternCommandTests {
    @Test(builtBinary)
    func aRunawaySplitPatternIsRefusedNotHung() throws {
        let scratch = TemporaryDirectory()
        defer { scratch.cleanUp() }
        let dir = try CLI.modelCopy(in: scratch)
        try CLI.editJSON(dir + "/tokenizer.json") {
            $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": #"(\p{L}+)+[0-9]|\s+"#], "behavior": "Isolated", "invert": false], $0["pre_tokenizer"]!]]
        }
        #expect(try CLI.run(["tokenize", "--model", dir, "--text", "the river 1"]).status == 0)
        let r = try CLI.run(["generate", "--model", dir, "--prompt", String(repeating: "ab", count: 40), "--max-tokens", "2"])
        #expect(r.status == 1 && r.stderr.contains("tokenizer.json: pre_tokenizer Split: regular expression")
                && r.stderr.contains("backtracks without bound on this text (U_REGEX_TIME_OUT)"), "\(r.stderr)")
    }
}
