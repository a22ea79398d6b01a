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
        #expect(texts.count == 4)
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
