import Foundation
import LQModel
import LQRAG
import LQTestSupport
import Testing

/// A fresh folder with documents and a database path, removed at the end.
final class Workspace {
    let path = NSTemporaryDirectory() + "lqlora-rag-test-" + UUID().uuidString
    var docs: String { path + "/docs" }
    var db: String { path + "/rag.sqlite" }

    init() { try! FileManager.default.createDirectory(atPath: path + "/docs", withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: docs + "/" + name)) }
    func write(_ name: String, bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: docs + "/" + name)) }
    func remove(_ name: String) throws { try FileManager.default.removeItem(atPath: docs + "/" + name) }
}

/// The tiny BERT of the encoder oracle (32 dimensions, 16 tokens at most).
let tinyBert = RealModel.root + "/Tests/LQModelTests/Fixtures/embeddings/tiny-bert"

/// WikiText-2's first paragraphs that are not headings.
func wikitextParagraphs(_ n: Int) throws -> [String] {
    let text = try String(contentsOfFile: RealModel.root + "/data/wikitext-2-raw-test.txt", encoding: .utf8)
    let lines = text.components(separatedBy: .newlines).map { $0.trimmingCharacters(in: .whitespaces) }
    return Array(lines.filter { !$0.isEmpty && !$0.hasPrefix("=") }.prefix(n))
}

struct IndexTests {
    let embedder = try! SentenceEmbedder(directory: tinyBert)
    var identity: EmbedderIdentity { try! EmbedderIdentity(embedder: embedder, directory: tinyBert) }

    func indexer(_ chunking: Chunking = .sentences(2), badFiles: Indexer.BadFiles = .fail) throws -> Indexer {
        var options = Indexer.Options()
        options.chunking = chunking
        options.badFiles = badFiles
        return try Indexer(embedder: embedder, identity: identity, options: options)
    }

    /// (file name, line, text) of every stored passage, by id.
    func contents(_ db: RAGDatabase) throws -> [Int: String] {
        let ids = Array(1...(try db.passageCount + 1000))
        return Dictionary(uniqueKeysWithValues: try db.passages(ids).map { ($0.id, URL(fileURLWithPath: $0.path).lastPathComponent + ":\($0.line) " + $0.text) })
    }

    @Test func reindexingReplacesChangedFilesOnly() throws {
        let w = Workspace()
        try w.write("a.txt", "One. Two. Three.\n\nFour.")
        try w.write("b.md", "# Title\n\nA markdown paragraph. With two sentences.")
        try w.write("c.jsonl", "{\"text\": \"Record one. Still one.\"}\n\n{\"text\": \"Record two.\"}\n")
        let db = try RAGDatabase.open(w.db, create: true)
        let first = try indexer().run(docs: w.docs, into: db)
        #expect(first.indexed == 3 && first.passagesAdded == 7 && first.totalPassages == 7)
        let before = try contents(db)
        #expect(Set(before.values) == ["a.txt:1 One. Two.", "a.txt:1 Three.", "a.txt:3 Four.", "b.md:1 # Title", "b.md:3 A markdown paragraph. With two sentences.",
                                       "c.jsonl:1 Record one. Still one.", "c.jsonl:3 Record two."])

        let again = try indexer().run(docs: w.docs, into: db)
        #expect(again.unchanged == 3 && again.indexed == 0 && again.passagesAdded == 0)
        #expect(try contents(db) == before)

        try w.write("a.txt", "One. Two. Three. Five.")
        try w.remove("c.jsonl")
        let changed = try indexer().run(docs: w.docs, into: db)
        #expect(changed.indexed == 1 && changed.unchanged == 1 && changed.removed == 1)
        #expect(changed.passagesAdded == 2 && changed.passagesRemoved == 5 && changed.totalPassages == 4)
        let after = try contents(db)
        #expect(Set(after.values) == ["a.txt:1 One. Two.", "a.txt:1 Three. Five.", "b.md:1 # Title", "b.md:3 A markdown paragraph. With two sentences."])
        // b.md kept its passages (and ids); a.txt's are new ids, never reused.
        #expect(after.filter { $0.value.hasPrefix("b.md") } == before.filter { $0.value.hasPrefix("b.md") })
        #expect(after.keys.filter { after[$0]!.hasPrefix("a.txt") }.allSatisfy { $0 > before.keys.max()! })

        // Another chunking re-chunks every file.
        let rechunked = try indexer(.sentences(1)).run(docs: w.docs, into: db)
        #expect(rechunked.indexed == 2 && rechunked.totalPassages == 7)
    }

    /// HNSW finds what exact search finds on a few hundred passages, and a passage's own text finds
    /// it first with cosine 1.
    @Test func hnswAgreesWithExactSearch() throws {
        let w = Workspace()
        try w.write("wiki.txt", try wikitextParagraphs(120).joined(separator: "\n\n"))
        let db = try RAGDatabase.open(w.db, create: true)
        let summary = try indexer(.sentences(1)).run(docs: w.docs, into: db)
        #expect(summary.totalPassages > 400)
        let retriever = try Retriever(database: db, embedder: embedder, identity: identity)
        var overlap = 0, queries = 0
        for passage in try db.passages(Array(stride(from: 1, to: summary.totalPassages, by: 23))) {
            let q = retriever.embed(passage.text)
            let exact = try retriever.nearest(q, k: 10, exact: true, ef: 64)
            let ann = try retriever.nearest(q, k: 10, exact: false, ef: 64)
            #expect(exact.count == 10 && ann.count == 10)
            #expect(abs(exact[0].score - 1) < 1e-5 && abs(ann[0].score - 1) < 1e-5, "\(passage.text)")
            overlap += Set(exact.map(\.id)).intersection(ann.map(\.id)).count
            queries += 1
        }
        #expect(Double(overlap) / Double(10 * queries) >= 0.98, "recall@10 \(Double(overlap) / Double(10 * queries))")
        // The exact oracle's scores are the inner products in order.
        let q = retriever.embed("The game was released in Japan.")
        let exact = try retriever.nearest(q, k: 50, exact: true, ef: 64)
        #expect(zip(exact, exact.dropFirst()).allSatisfy { $0.score >= $1.score })
    }

    /// tokens:N passages hold whole words and at most N of the embedder's tokens.
    @Test func tokenChunksFitTheirBudget() throws {
        let w = Workspace()
        let text = try wikitextParagraphs(6).joined(separator: "\n\n")
        try w.write("wiki.txt", text)
        let db = try RAGDatabase.open(w.db, create: true)
        let summary = try indexer(.tokens(8)).run(docs: w.docs, into: db)
        let passages = try db.passages(Array(1...summary.totalPassages))
        #expect(passages.count == summary.totalPassages && summary.totalPassages > 40)
        let words = Set(text.split(whereSeparator: \.isWhitespace))
        for p in passages {
            #expect(embedder.tokenize(p.text).ids.count <= 8 + 2 || !p.text.contains(" "), "\(p.text)")
            #expect(p.text.split(whereSeparator: \.isWhitespace).allSatisfy(words.contains), "\(p.text)")
        }
        // Packed greedily: no passage could take the next one's first word.
        for (a, b) in zip(passages, passages.dropFirst()) where a.line == b.line {
            let joined = a.text + " " + b.text.split(separator: " ")[0]
            #expect(embedder.tokenize(joined).ids.count > 8 + 2 || embedder.tokenize(joined).truncated, "\(a.text) | \(b.text)")
        }
    }

    @Test func anotherEmbedderIsRefusedByName() throws {
        let w = Workspace()
        try w.write("a.txt", "Some text.")
        let db = try RAGDatabase.open(w.db, create: true)
        _ = try indexer().run(docs: w.docs, into: db)
        let i = identity
        #expect(throws: RAGError.otherEmbedder(path: w.db, property: "dimension", stored: "32", given: "384")) {
            try db.check(EmbedderIdentity(name: i.name, dimension: 384, weights: i.weights))
        }
        #expect(throws: RAGError.otherEmbedder(path: w.db, property: "model name", stored: "'tiny-bert'", given: "'other'")) {
            try db.check(EmbedderIdentity(name: "other", dimension: 32, weights: i.weights))
        }
        #expect(throws: RAGError.otherEmbedder(path: w.db, property: "weights (CRC-32)", stored: i.weights, given: "model.safetensors:0")) {
            try db.check(EmbedderIdentity(name: i.name, dimension: 32, weights: "model.safetensors:0"))
        }
        // Indexing with it changes nothing.
        var options = Indexer.Options()
        options.chunking = .sentences(2)
        let other = try Indexer(embedder: embedder, identity: EmbedderIdentity(name: "other", dimension: 32, weights: i.weights), options: options)
        try w.write("b.txt", "More text.")
        #expect(throws: RAGError.self) { try other.run(docs: w.docs, into: db) }
        #expect(try db.passageCount == 1)
        #expect(throws: RAGError.self) { try Retriever(database: db, embedder: embedder, identity: EmbedderIdentity(name: "other", dimension: 32, weights: i.weights)) }
    }

    @Test func badFilesFailTheRunOrAreSkipped() throws {
        let w = Workspace()
        try w.write("good.txt", "Good text. More good text.")
        let db = try RAGDatabase.open(w.db, create: true)
        _ = try indexer().run(docs: w.docs, into: db)
        try w.write("a-new.txt", "New text.")
        try w.write("latin1.txt", bytes: Array("Caf".utf8) + [0xE9] + Array(" au lait.\nSecond line.".utf8))
        try w.write("z.jsonl", "{\"text\": \"fine\"}\n{\"txt\": \"no text\"}\n")
        let path = URL(fileURLWithPath: w.docs + "/latin1.txt").standardizedFileURL.path
        #expect(throws: TextError.invalidUTF8(path: path, line: 1, offset: 3)) { try indexer().run(docs: w.docs, into: db) }
        // Nothing of the failed run is in the database, not even a-new.txt, read before the bad file.
        #expect(try db.passageCount == 1)
        #expect(try db.passages([1]).first?.text == "Good text. More good text.")

        var skipped: [String] = []
        let summary = try indexer(badFiles: .skip).run(docs: w.docs, into: db) { event in
            if case let .skipped(path, reason) = event { skipped.append(URL(fileURLWithPath: path).lastPathComponent + ": " + reason) }
        }
        #expect(summary.skipped == 2 && summary.indexed == 1 && summary.unchanged == 1 && summary.totalPassages == 2)
        #expect(skipped.count == 2 && skipped[0].hasPrefix("latin1.txt: \(path):1: not UTF-8 (byte 3") && skipped[1].contains("z.jsonl:2: field \"text\" is missing"),
                "\(skipped)")
    }

    @Test func emptyDocumentsAreErrors() throws {
        let w = Workspace()
        let db = try RAGDatabase.open(w.db, create: true)
        #expect(throws: RAGError.noDocuments(path: w.docs)) { try indexer().run(docs: w.docs, into: db) }
        try w.write("notes.pdf", "not read")
        #expect(throws: RAGError.noDocuments(path: w.docs)) { try indexer().run(docs: w.docs, into: db) }
        #expect(throws: RAGError.noDocuments(path: w.docs + "/notes.pdf")) { try indexer().run(docs: w.docs + "/notes.pdf", into: db) }
        try w.write("blank.txt", "  \n\n\t\n")
        #expect(throws: RAGError.noPassages(path: w.docs)) { try indexer().run(docs: w.docs, into: db) }
        #expect(try db.passageCount == 0 && db.embedder() == nil)
        #expect(throws: RAGError.chunkTooLong(tokens: 15, maxLength: 16)) { try indexer(.tokens(15)) }
    }

    @Test func otherFilesAreNotDatabases() throws {
        let w = Workspace()
        #expect(throws: RAGError.notFound(path: w.db)) { try RAGDatabase.open(w.db) }
        try w.write("x.txt", "plain text, not SQLite")
        #expect(throws: RAGError.self) { try RAGDatabase.open(w.docs + "/x.txt") }
    }
}
