import Foundation
import LQTestSupport
import Testing

/// `lqlora embed` against sentence-transformers' embeddings of the same texts
/// (Tests/LQModelTests/Fixtures/embeddings, scripts/make-embedding-fixtures.py).
struct EmbedCommandTests {
    static let fixtures = CLI.root + "/Tests/LQModelTests/Fixtures/embeddings"
    static let tiny = fixtures + "/tiny-bert"
    static let oracle = try! JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/tiny.json"))) as! [String: Any]
    static let texts = oracle["texts"] as! [String]

    /// --json's lines as (text, embedding).
    static func records(_ stdout: String) throws -> [(String, [Float])] {
        try stdout.split(separator: "\n").map { line in
            let r = try CLI.json(String(line))
            return (r["text"] as! String, (r["embedding"] as! [NSNumber]).map(\.floatValue))
        }
    }

    static func jsonl(_ texts: [String]) throws -> String {
        try texts.map { String(decoding: try JSONSerialization.data(withJSONObject: ["text": $0]), as: UTF8.self) }.joined(separator: "\n") + "\n"
    }

    @Test(builtBinary)
    func jsonLinesMatchSentenceTransformers() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try Self.jsonl(Self.texts).write(toFile: dir.file("texts.jsonl"), atomically: true, encoding: .utf8)
        let fromFile = try CLI.succeed(["embed", "--model", Self.tiny, "--file", dir.file("texts.jsonl"), "--json", "--batch-size", "5"])
        let records = try Self.records(fromFile)
        #expect(records.map(\.0) == Self.texts)
        let expected = (Self.oracle["embeddings"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        for ((text, got), want) in zip(records, expected) {
            let d = zip(got, want).map { abs($0 - $1) }.max()!
            #expect(got.count == 32 && d <= 1e-5, "\(text.debugDescription): max |Δ| \(d)")
        }
        // The same texts given with --text print the same bytes; the one-line ones from a .txt file
        // the same texts, their embeddings within rounding (other batches multiply other shapes).
        let fromArguments = try CLI.succeed(["embed", "--model", Self.tiny, "--json", "--batch-size", "5"] + Self.texts.flatMap { ["--text", $0] })
        #expect(fromArguments == fromFile)
        let lines = Self.texts.filter { !$0.contains("\n") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        try (lines.joined(separator: "\n") + "\n\n").write(toFile: dir.file("texts.txt"), atomically: true, encoding: .utf8)
        let fromText = try Self.records(try CLI.succeed(["embed", "--model", Self.tiny, "--file", dir.file("texts.txt"), "--json"]))
        #expect(fromText.map(\.0) == lines)
        let same = records.filter { lines.contains($0.0) }.map(\.1)
        let d = zip(fromText, same).flatMap { zip($0.1, $1).map { abs($0 - $1) } }.max()!
        #expect(same.count == fromText.count && d <= 1e-6, "the .txt file's embeddings: max |Δ| \(d)")
    }

    @Test(builtBinary)
    func summaryLines() throws {
        let r = try CLI.run(["embed", "--model", Self.tiny, "--text", "Paris is the capital of France.", "--text", "A"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3 && lines[0] == "2 embeddings of 32 dimensions (mean pooling, L2-normalised, at most 16 tokens)", "\(r.stdout)")
        #expect(lines[2].hasPrefix("   2    3 tokens  norm 1.0000  [") && lines[2].hasSuffix("…]  \"A\""), "\(lines[2])")
        #expect(r.stderr.contains("embedded 2 texts (19 tokens, 1 truncated to 16)"), "\(r.stderr)")
    }

    /// The same bytes on 1 and 3 threads: the tiny model, and all-MiniLM-L6-v2 (whose products are
    /// large enough to be tiled) where it is fetched.
    @Test(builtBinary)
    func outputDoesNotDependOnTheThreadCount() throws {
        var models = [Self.tiny]
        if RealModel.enabled(RealModel.miniLM) { models.append(RealModel.miniLM) } else {
            print("the thread-count check on all-MiniLM-L6-v2 skipped: not fetched (scripts/fetch-minilm.sh)")
        }
        let arguments = (Self.texts + Self.texts + Self.texts).flatMap { ["--text", $0] }
        for model in models {
            let outputs = try [1, 3].map { try CLI.succeed(["embed", "--model", model, "--json", "--threads", String($0)] + arguments) }
            #expect(outputs[0] == outputs[1] && !outputs[0].isEmpty, "\(model): output differs between 1 and 3 threads")
        }
    }

    /// NF4 weights plug into the encoder: `quantize` of the tiny model embeds exactly as its
    /// `dequantize`d fp32 checkpoint does.
    @Test(builtBinary)
    func quantizedEncoderEmbedsAsItsDequantizedWeights() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        _ = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", dir.file("nf4"), "--method", "nf4", "--targets", "query,key,value,dense"])
        _ = try CLI.succeed(["dequantize", "--model", dir.file("nf4"), "--out", dir.file("dense"), "--dtype", "f32"])
        let arguments = ["--json"] + Self.texts.flatMap { ["--text", $0] }
        let quantized = try Self.records(try CLI.succeed(["embed", "--model", dir.file("nf4")] + arguments))
        let dense = try Self.records(try CLI.succeed(["embed", "--model", dir.file("dense")] + arguments))
        let d = zip(quantized, dense).flatMap { zip($0.1, $1.1).map { abs($0 - $1) } }.max()!
        #expect(quantized.count == Self.texts.count && d <= 1e-5, "NF4 against dequantized: max |Δ| \(d)")
    }

    @Test(builtBinary)
    func badInputIsNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try "{\"text\": \"one\"}\n\n{\"txt\": \"two\"}\n".write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        let r = try CLI.run(["embed", "--model", Self.tiny, "--file", dir.file("bad.jsonl")])
        #expect(r.status == 1 && r.stderr.contains("lqlora embed: error: \(dir.file("bad.jsonl")):3: field \"text\" is missing"), "\(r.stderr)")
        let both = try CLI.run(["embed", "--model", Self.tiny, "--file", dir.file("bad.jsonl"), "--text", "x"])
        #expect(both.status == 64 && both.stderr.contains("give --text (once or more) or --file, not both"), "\(both.stderr)")
        let missing = try CLI.run(["embed", "--model", dir.file("nowhere"), "--text", "x"])
        #expect(missing.status == 1 && missing.stderr.contains("nowhere/config.json: config key '(file)' is missing or not a JSON object"), "\(missing.stderr)")
    }
}
