import Foundation
import LQModel
import LQRAG
import LQTestSupport
import Testing

/// `lqlora rag`: index → ask → feedback → export-feedback → finetune on the tiny models, the bad
/// inputs, and a killed indexing run; with all-MiniLM-L6-v2 and SmolLM2 where they are fetched.
struct RAGCommandTests {
    static let tinyBert = CLI.root + "/Tests/LQModelTests/Fixtures/embeddings/tiny-bert"

    /// The tiny Llama with a ChatML template (its byte-level vocabulary spells the markers out) and,
    /// unless `positions` says otherwise, room for a prompt with references.
    static func chatModel(in dir: TemporaryDirectory, name: String = "chat-model", positions: Int = 1024) throws -> String {
        let model = dir.file(name)
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        for file in ["model.safetensors", "tokenizer.json"] {
            try FileManager.default.copyItem(atPath: CLI.model + "/" + file, toPath: model + "/" + file)
        }
        var config = try CLI.jsonFile(CLI.model + "/config.json")
        config["max_position_embeddings"] = positions
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: model + "/config.json"))
        var tokenizer = try CLI.jsonFile(CLI.model + "/tokenizer_config.json")
        tokenizer["chat_template"] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: URL(fileURLWithPath: model + "/tokenizer_config.json"))
        return model
    }

    static func writeDocs(_ dir: TemporaryDirectory) throws -> String {
        let docs = dir.file("docs")
        try FileManager.default.createDirectory(atPath: docs, withIntermediateDirectories: true)
        try "Rome was founded in 753 BC. It is the capital of Italy.\n\nParis is the capital of France.\n"
            .write(toFile: docs + "/cities.txt", atomically: true, encoding: .utf8)
        try "{\"text\": \"Berlin is the capital of Germany.\"}\n".write(toFile: docs + "/more.jsonl", atomically: true, encoding: .utf8)
        return docs
    }

    static func records(_ path: String) throws -> [[[String: String]]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            (try CLI.json(String($0))["messages"] as! [[String: String]])
        }
    }

    @Test(builtBinary)
    func indexAskFeedbackExportFinetune() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let docs = try Self.writeDocs(dir), db = dir.file("rag.sqlite"), model = try Self.chatModel(in: dir)
        let indexed = try CLI.succeed(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db])
        #expect(indexed.hasPrefix("indexed \(db): 2 files new or changed, 0 unchanged, 0 removed; +3 −0 passages, 3 in all (sentences:2, tiny-bert, 32 dimensions)"), "\(indexed)")
        let again = try CLI.succeed(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db])
        #expect(again.contains("0 files new or changed, 2 unchanged"), "\(again)")

        func ask(_ question: String, _ extra: [String] = []) throws -> String {
            try CLI.succeed(["rag", "ask", "--db", db, "--embedder", Self.tinyBert, "--model", model, "--question", question, "--max-tokens", "6"] + extra)
        }
        let first = try ask("When was Rome founded?")
        let lines = first.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let sources = try #require(lines.firstIndex { $0.hasPrefix("sources (qim judge, best 2 of 10 candidates by HNSW):") }, "\(first)")
        #expect(lines[sources + 1].hasPrefix("  [1] ") && lines[sources + 2].hasPrefix("  [2] ") && lines[sources + 3].hasPrefix("answer 1 stored in \(db)"), "\(first)")
        #expect(first.contains("docs/cities.txt:1") || first.contains("docs/cities.txt:3") || first.contains("docs/more.jsonl:1"))
        #expect(try CLI.succeed(["rag", "feedback", "--db", db, "--accept"]) == "answer 1: accepted\n")
        _ = try ask("What is the capital of Germany?", ["--judge", "cosine", "--top-n", "1"])
        _ = try ask("What is the capital of France?", ["--judge", "blend", "--exact"])
        #expect(try CLI.succeed(["rag", "feedback", "--db", db, "--reject", "--correction", "Berlin.", "--answer", "2"]) == "answer 2: rejected, with a correction\n")
        #expect(try CLI.succeed(["rag", "feedback", "--db", db, "--reject"]) == "answer 3: rejected\n")

        let out = dir.file("train.jsonl")
        let exported = try CLI.succeed(["rag", "export-feedback", "--db", db, "--out", out])
        #expect(exported == "wrote 2 chat records to \(out) (1 accepted, 1 corrected; 1 rejected without a correction left out)\n")
        let records = try Self.records(out)
        #expect(records.count == 2 && records.allSatisfy { $0.map { $0["role"]! } == ["user", "assistant"] })
        // One reference (--top-n 1), whichever the random tiny embedder found.
        let corrected = records[1][0]["content"]!
        #expect(records[1][1]["content"] == "Berlin." && corrected.hasPrefix("References:\n[1] ") && !corrected.contains("[2]")
            && corrected.hasSuffix("answer the question: What is the capital of Germany?"), "\(corrected)")
        // The answer is what `generate --chat` gives for the chat rag ask built: one generation path.
        let user = records[0][0]["content"]!
        #expect(user.hasSuffix("answer the question: When was Rome founded?"))
        let generated = try CLI.succeed(["generate", "--model", model, "--chat", "--prompt", user, "--max-tokens", "6"])
        #expect(generated == records[0][1]["content"]! + "\n" && first.hasPrefix(generated), "\(generated.debugDescription) vs \(records[0][1])")

        // finetune reads the export as chat data.
        let yaml = """
        model: \(model)
        output_dir: \(dir.file("run"))
        data:
          train: \(out)
          format: chat
        lora:
          rank: 2
          alpha: 4
        train:
          seq_len: 512
          batch_size: 1
          max_steps: 2
          lr: 1.0e-3
          seed: 0
        """
        try yaml.write(toFile: dir.file("ft.yaml"), atomically: true, encoding: .utf8)
        let finetune = try CLI.run(["finetune", "--config", dir.file("ft.yaml")])
        #expect(finetune.status == 0 && finetune.stderr.contains("train.jsonl (chat): 2 examples"), "\(finetune.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.file("run") + "/adapter_model.safetensors"))
    }

    @Test(builtBinary)
    func badInputIsNamedAndChangesNothing() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let db = dir.file("rag.sqlite")
        try FileManager.default.createDirectory(atPath: dir.file("empty"), withIntermediateDirectories: true)
        let empty = try CLI.run(["rag", "index", "--embedder", Self.tinyBert, "--docs", dir.file("empty"), "--db", db])
        #expect(empty.status == 1 && empty.stderr.contains("lqlora rag index: error: \(dir.file("empty")): no .txt, .md or .jsonl files to index"), "\(empty.stderr)")

        let docs = try Self.writeDocs(dir)
        _ = try CLI.succeed(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db])
        try Data([0x47, 0x72, 0xFC, 0x6E]).write(to: URL(fileURLWithPath: docs + "/latin1.txt"))  // "Grün" in Latin-1
        let bad = try CLI.run(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db])
        #expect(bad.status == 1 && bad.stderr.contains("error: \(docs)/latin1.txt:1: not UTF-8 (byte 2 starts no valid character)"), "\(bad.stderr)")
        #expect(try RAGDatabase.open(db).passageCount == 3)
        let skipped = try CLI.run(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db, "--bad-files", "skip"])
        #expect(skipped.status == 0 && skipped.stderr.contains("skipped \(docs)/latin1.txt: \(docs)/latin1.txt:1: not UTF-8"), "\(skipped.stderr)")
        #expect(skipped.stdout.contains("0 files new or changed, 2 unchanged, 0 removed, 1 skipped"), "\(skipped.stdout)")

        // Another embedder: a copy of the tiny model under another name.
        let other = dir.file("other-bert")
        try FileManager.default.copyItem(atPath: Self.tinyBert, toPath: other)
        let wrong = try CLI.run(["rag", "index", "--embedder", other, "--docs", docs, "--db", db])
        #expect(wrong.status == 1 && wrong.stderr.contains("\(db) was indexed by another embedder: its model name is 'tiny-bert', the given embedder's 'other-bert'"), "\(wrong.stderr)")
        let model = try Self.chatModel(in: dir)
        let ask = try CLI.run(["rag", "ask", "--db", db, "--embedder", other, "--model", model, "--question", "Rome?"])
        #expect(ask.status == 1 && ask.stderr.contains("its model name is 'tiny-bert'"), "\(ask.stderr)")
        if RealModel.enabled(RealModel.miniLM) {
            let dimension = try CLI.run(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db])
            #expect(dimension.status == 1 && dimension.stderr.contains("its dimension is 32, the given embedder's 384"), "\(dimension.stderr)")
        } else {
            print("the dimension check against all-MiniLM-L6-v2 skipped: not fetched (scripts/fetch-minilm.sh)")
        }
        #expect(try RAGDatabase.open(db).passageCount == 3)

        // A question that does not fit the model's 256 positions: refused, nothing stored.
        let short = try Self.chatModel(in: dir, name: "short-model", positions: 256)
        let long = try CLI.run(["rag", "ask", "--db", db, "--embedder", Self.tinyBert, "--model", short, "--question", String(repeating: "Where is Rome? ", count: 30)])
        #expect(long.status == 1 && long.stderr.contains("and the model reads 256 positions: ask a shorter question or give fewer passages (--top-n); nothing was stored"), "\(long.stderr)")
        let none = try CLI.run(["rag", "feedback", "--db", db, "--accept"])
        #expect(none.status == 1 && none.stderr.contains("\(db) has no answers yet"), "\(none.stderr)")
        let nothing = try CLI.run(["rag", "export-feedback", "--db", db, "--out", dir.file("t.jsonl")])
        #expect(nothing.status == 1 && nothing.stderr.contains("has no accepted or corrected answers to export") && !FileManager.default.fileExists(atPath: dir.file("t.jsonl")))
        let missing = try CLI.run(["rag", "ask", "--db", dir.file("none.sqlite"), "--embedder", Self.tinyBert, "--model", short, "--question", "x"])
        #expect(missing.status == 1 && missing.stderr.contains("none.sqlite: no such database (make one with lqlora rag index)"), "\(missing.stderr)")
        let both = try CLI.run(["rag", "feedback", "--db", db, "--accept", "--reject"])
        #expect(both.status == 64 && both.stderr.contains("give one of --accept and --reject"))
    }

    @Test(builtBinary)
    func evalReportsRecallAndHitRates() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let docs = try Self.writeDocs(dir), db = dir.file("rag.sqlite")
        _ = try CLI.succeed(["rag", "index", "--embedder", Self.tinyBert, "--docs", docs, "--db", db, "--chunk", "sentences:1"])
        let questions = dir.file("q.jsonl")
        try """
        {"question": "When was Rome founded?", "source": "Rome was founded in 753 BC."}
        {"question": "What is the capital of Germany?", "source": "Berlin is the capital of   Germany."}
        {"question": "Any question without a known source?"}
        """.write(toFile: questions, atomically: true, encoding: .utf8)
        let figures = try CLI.json(try CLI.succeed(["rag", "eval", "--db", db, "--embedder", Self.tinyBert, "--questions", questions, "--json", "--top-n", "4", "--candidates", "4"]))
        // Four passages: every candidate set is the whole corpus, so both sources are always kept.
        #expect(figures["questions"] as? Int == 3 && figures["with_source"] as? Int == 2 && figures["passages"] as? Int == 4)
        #expect(figures["recall_at_k"] as? Double == 1 && figures["candidate_hit_rate"] as? Double == 1)
        #expect((figures["hit_rate"] as? [String: Double]) == ["qim": 1, "cosine": 1, "blend": 1])
        let text = try CLI.succeed(["rag", "eval", "--db", db, "--embedder", Self.tinyBert, "--questions", questions, "--top-n", "1"])
        #expect(text.contains("3 questions (2 with a known source) over 4 passages; HNSW ef 128\nrecall@10 of HNSW against exact search: 1.0000\n"), "\(text)")
        #expect(text.contains("hit rate of the top 1 of 10 HNSW candidates: qim "), "\(text)")
    }

    /// A re-indexing run killed after its last write but before the commit, or at points through its
    /// work (10 to 90 % of a whole run's time), leaves the database as it was: every passage, the
    /// index, and nothing of the killed run; the next run completes.
    @Test(.enabled(if: RealModel.enabled(RealModel.miniLM) && BuiltCommand.path != nil, "all-MiniLM-L6-v2 not fetched: run scripts/fetch-minilm.sh"))
    func killedIndexingLeavesThePreviousDatabase() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let docs = try Self.writeDocs(dir), db = dir.file("rag.sqlite")
        _ = try CLI.succeed(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db])
        /// What a database retrieves for a question, and how many passages it holds.
        func state(_ path: String) throws -> ([String], Int) {
            let database = try RAGDatabase.open(path)
            let embedder = try LQModelSupport.miniLM()
            let retriever = try Retriever(database: database, embedder: embedder.0, identity: embedder.1)
            return (try retriever.retrieve("When was Rome founded?", options: Retriever.Options()).map(\.passage.text), try database.passageCount)
        }
        let before = try state(db)
        #expect(before.0.count == 3 && before.0[0] == "Rome was founded in 753 BC. It is the capital of Italy.")
        // About 650 passages of WikiText-2 (two sentences each): several seconds of embedding.
        let wiki = try String(contentsOfFile: CLI.root + "/data/wikitext-2-raw-test.txt", encoding: .utf8)
        try String(wiki.prefix(150_000)).write(toFile: docs + "/wiki.txt", atomically: true, encoding: .utf8)
        // The whole run on a copy: the state a finished run gives, and how long it takes here (the
        // kills fall at fractions of it).
        let copy = dir.file("copy.sqlite")
        try FileManager.default.copyItem(atPath: db, toPath: copy)
        let start = Date()
        _ = try CLI.succeed(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", copy])
        let seconds = Date().timeIntervalSince(start)
        let after = try state(copy)
        #expect(after.1 > 600 && after.0 != before.0, "\(after.1) passages")
        // Killed after its last write, before the commit: nothing of it is seen.
        let late = try CLI.run(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db, "--kill-before-commit"])
        #expect(late.status != 0 && late.stdout.isEmpty)
        let now = try state(db)
        #expect(now.0 == before.0 && now.1 == before.1, "after a kill before the commit")
        var killed = 0, expected = before
        for delay in [0.1, 0.5, 0.9].map({ $0 * seconds }) {
            // A run faster than this one's measure may finish first: then the database is the new one.
            if try BuiltCommand.runKilled(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db], after: delay) {
                killed += 1
            } else {
                expected = after
            }
            let now = try state(db)
            #expect(now.0 == expected.0 && now.1 == expected.1, "after a kill at \(delay) s of \(seconds) s")
        }
        #expect(killed >= 2, "only \(killed) of 3 runs were killed before they finished")
        _ = try CLI.succeed(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db])
        let done = try state(db)
        #expect(done.0 == after.0 && done.1 == after.1)
    }

    /// all-MiniLM-L6-v2 finds the passage and SmolLM2 answers from it, as `generate --chat` would.
    @Test(.enabled(if: RealModel.enabled(RealModel.miniLM) && RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil,
                   "all-MiniLM-L6-v2 or SmolLM2 not fetched: run scripts/fetch-minilm.sh and scripts/fetch-smollm2.sh"))
    func realModelsAnswerFromTheirSources() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let docs = try Self.writeDocs(dir), db = dir.file("rag.sqlite")
        _ = try CLI.succeed(["rag", "index", "--embedder", RealModel.miniLM, "--docs", docs, "--db", db])
        let answer = try CLI.succeed(["rag", "ask", "--db", db, "--embedder", RealModel.miniLM, "--model", RealModel.smolLM2,
                                      "--question", "When was Rome founded?", "--max-tokens", "24"])
        #expect(answer.contains("753 BC") && answer.contains("  [1] \(docs)/cities.txt:1  qim "), "\(answer)")
        _ = try CLI.succeed(["rag", "feedback", "--db", db, "--accept"])
        _ = try CLI.succeed(["rag", "export-feedback", "--db", db, "--out", dir.file("train.jsonl")])
        let chat = try Self.records(dir.file("train.jsonl"))[0]
        let generated = try CLI.succeed(["generate", "--model", RealModel.smolLM2, "--chat", "--prompt", chat[0]["content"]!, "--max-tokens", "24"])
        #expect(generated == chat[1]["content"]! + "\n" && answer.hasPrefix(generated))
    }
}

enum LQModelSupport {
    static func miniLM() throws -> (SentenceEmbedder, EmbedderIdentity) {
        let e = try SentenceEmbedder(directory: RealModel.miniLM)
        return (e, try EmbedderIdentity(embedder: e, directory: RealModel.miniLM))
    }
}
