import Foundation
import Testing

/// `lqlora eval --task cot-faithfulness` on the tiny model with the shipped sample: the same output
/// twice (the timings aside), the JSON's schema, and named refusals. The tiny model's vocabulary
/// has no digits, so answers are read as its first word (--answer-regex), which varies between probes.
struct FaithfulnessCommandTests {
    static let sample = CLI.root + "/data/cot/gsm8k-sample.jsonl"
    static let options = ["eval", "--model", CLI.model, "--task", "cot-faithfulness", "--data", sample, "--no-chat",
                          "--prompt-template", "Question: {question}\\nAnswer: ", "--max-new-tokens", "24", "--answer-tokens", "6",
                          "--answer-regex", "([a-z]+)"]

    /// The JSON without its timings.
    static func untimed(_ out: String) throws -> [String: Any] {
        var json = try CLI.json(out)
        #expect(json["seconds"] is Double && json["items_per_second"] is Double)
        json["seconds"] = nil
        json["items_per_second"] = nil
        return json
    }

    @Test(builtBinary)
    func deterministicWithItsSchema() throws {
        let first = try CLI.succeed(Self.options + ["--json"]), second = try CLI.succeed(Self.options + ["--json"])
        let json = try Self.untimed(first)
        #expect(NSDictionary(dictionary: json).isEqual(to: try Self.untimed(second)), "two runs differ")
        #expect(Set(json.keys) == ["task", "items", "answered", "accuracy_with_chain", "accuracy_without_chain", "mean_chain_tokens",
                                   "mean_sentences", "early_answering", "solution", "filler", "mistake", "mistake_provided", "paraphrase", "records"])
        #expect(json["task"] as? String == "cot-faithfulness" && json["items"] as? Int == 20 && json["mistake_provided"] as? Int == 20)
        let early = json["early_answering"] as! [String: Any]
        #expect(Set(early.keys) == ["items", "fraction_kept", "unchanged", "aoc"])
        #expect(early["fraction_kept"] as? [Double] == [0, 0.2, 0.4, 0.6, 0.8, 1])
        let unchanged = early["unchanged"] as! [Double]
        #expect(unchanged.count == 6 && unchanged.last == 1 && unchanged.allSatisfy { (0...1).contains($0) })
        // Answers do change as the chain grows: the curve is not flat.
        #expect(unchanged.first! < 1 && (early["aoc"] as! Double) > 0)
        for probe in ["solution", "filler", "mistake", "paraphrase"] {
            let p = json[probe] as! [String: Any]
            #expect(Set(p.keys) == ["items", "unchanged", "accuracy"] && p["items"] as? Int == 20, "\(probe): \(p)")
        }
        let records = json["records"] as! [[String: Any]]
        #expect(records.count == 20)
        for (i, r) in records.enumerated() {
            #expect(Set(r.keys) == ["at", "gold", "chain", "chain_tokens", "sentences", "answer", "early", "solution", "filler", "mistake", "paraphrase"])
            #expect(r["at"] as? String == Self.sample + ":\(i + 1)" && (r["early"] as! [Any]).count == (r["sentences"] as! Int) + 1)
            #expect(r["chain_tokens"] as? Int == 24)  // the tiny model writes no stop token
            let mistake = r["mistake"] as! [String: Any]
            #expect(Set(mistake.keys) == ["source", "sentence", "original", "replacement", "chain", "answer"] && mistake["source"] as? String == "provided")
        }
        // The table: everything but the timing line is the same twice.
        let table = try CLI.succeed(Self.options), again = try CLI.succeed(Self.options)
        let lines = table.split(separator: "\n")
        #expect(lines.dropLast() == again.split(separator: "\n").dropLast() && lines.count == 14, "\(table)")
        #expect(table.hasPrefix("cot-faithfulness: 20 items, ") && table.contains("\nmistake: 20 corrupted chains given, 0 with a number"))
        #expect(lines.last!.hasPrefix("20 items, ") && lines.last!.hasSuffix(" items/s"))
    }

    @Test(builtBinary)
    func multipleChoiceRecords() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try """
        {"question": "Which one is a river?", "choices": ["stone", "river", "paper"], "answer": "B", "solution": "A river flows.", "paraphrased_chain": "Rivers flow."}
        {"question": "Which one is north?", "choices": ["north", "map"], "answer": 0}
        """.write(toFile: dir.file("mc.jsonl"), atomically: true, encoding: .utf8)
        let out = try CLI.json(try CLI.succeed(["eval", "--model", CLI.model, "--task", "cot-faithfulness", "--data", dir.file("mc.jsonl"), "--no-chat",
                                                "--max-new-tokens", "16", "--answer-tokens", "4", "--json"]))
        let records = out["records"] as! [[String: Any]]
        #expect(records.map { $0["gold"] as? String } == ["B", "A"])
        #expect((out["paraphrase"] as! [String: Any])["items"] as? Int == 1 && (out["solution"] as! [String: Any])["items"] as? Int == 1)
    }

    @Test(builtBinary)
    func refusalsAreNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try "{\"question\": \"q\", \"answer\": \"#### 4\"}\n{\"question\": \"q\", \"answer\": \"four\"}\n".write(toFile: dir.file("bad.jsonl"), atomically: true, encoding: .utf8)
        let task = ["--task", "cot-faithfulness"]
        let cases: [([String], String)] = [
            (task + ["--data", Self.sample], "has no chat_template; give --no-chat"),
            (task + ["--data", dir.file("bad.jsonl"), "--no-chat"], dir.file("bad.jsonl") + ":2: \"answer\" has no \"#### \""),
            (task + ["--data", Self.sample, "--no-chat", "--prompt-template", "Think."], "the prompt template \"Think.\" has no {question} to fill"),
            (task + ["--data", Self.sample, "--ctx", "64"], "--ctx does not apply to --task cot-faithfulness"),
            (task + ["--data", Self.sample, "--answer-regex", "(["], "--answer-regex: the answer pattern '([' is not a regular expression"),
            (task + ["--data", Self.sample, "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
            (["--data", CLI.text("sample.txt"), "--max-new-tokens", "8"], "--max-new-tokens applies to --task cot-faithfulness only"),
            (["--task", "piqa", "--data", Self.sample, "--no-chat"], "--no-chat applies to --task cot-faithfulness only"),
            // A prompt longer than the tiny model's 256 positions is named by its record.
            (task + ["--data", Self.sample, "--no-chat", "--prompt-template", String(repeating: "river ", count: 300) + "{question}"],
             Self.sample + ":1: the prompt"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["eval", "--model", CLI.model] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
