import ArgumentParser
import Foundation
import LQModel
import LQRAG

/// `lqlora rag`: a database of passages from the user's documents, answers grounded on them, and
/// the feedback on those answers as training data.
struct RAG: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retrieval-augmented answers: index documents, ask questions, record feedback, export it for finetune.",
        discussion: """
            The database (--db) is one SQLite file: passages with their embeddings, an HNSW index over them \
            (hnswlib), the embedder it was made with, the answers given and the feedback on them.
            """,
        subcommands: [RAGIndex.self, RAGAsk.self, RAGFeedback.self, RAGExportFeedback.self, RAGEval.self])
}

extension Judge: ExpressibleByArgument {}
extension Indexer.BadFiles: ExpressibleByArgument {}

/// `--embedder`, for the commands that embed text.
struct EmbedderOptions: ParsableArguments {
    @Option(help: "The sentence-transformers embedder directory (e.g. models/all-MiniLM-L6-v2).")
    var embedder: String

    func load() throws -> (SentenceEmbedder, EmbedderIdentity) {
        let e = try SentenceEmbedder(directory: embedder)
        return (e, try EmbedderIdentity(embedder: e, directory: embedder))
    }
}

/// How passages are found and judged: `ask` and `eval`.
struct RetrievalOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Passages given to the model, the best by the judge.")
    var topN = 2

    @Option(help: "How candidates are ranked: qim (the Quantized Influence Measure), cosine, or blend.")
    var judge: Judge = .qim

    @Option(parsing: .unconditional, help: "Candidates retrieved for the judge.")
    var candidates = 10

    @Option(parsing: .unconditional, help: "HNSW search breadth (more: better recall, slower).")
    var ef = 128

    @Flag(help: "Exact search over every stored vector instead of the HNSW index (the index's oracle).")
    var exact = false

    @Option(parsing: .unconditional, help: "QIM's quantization levels.")
    var levels = QIM.defaultLevels

    @Option(parsing: .unconditional, help: "The blend judge's weight on cosine (the rest on QIM), each min-max scaled over the candidates.")
    var blendWeight = 0.5

    func validate() throws {
        guard topN >= 1, candidates >= topN else { throw ValidationError("--top-n must be at least 1 and --candidates at least --top-n") }
        guard ef >= 1, levels >= 2 else { throw ValidationError("--ef must be at least 1 and --levels at least 2") }
        guard (0...1).contains(blendWeight) else { throw ValidationError("--blend-weight must be in [0, 1]") }
    }

    var options: Retriever.Options {
        var o = Retriever.Options()
        o.topN = topN
        o.judge = judge
        o.candidates = candidates
        o.ef = ef
        o.exact = exact
        o.levels = levels
        o.blendWeight = blendWeight
        return o
    }
}

/// `lqlora rag index`.
struct RAGIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Chunk, embed and index documents (.txt, .md, .jsonl with a \"text\" field per line) into the database.",
        discussion: """
            A folder is read recursively (hidden files left out). A file already indexed with the same content \
            and chunking is kept as it is; a changed one has its passages replaced; a file that was under the \
            folder and is gone loses its passages. Passages never cross a paragraph (a blank line). The run is \
            one SQLite transaction: if it fails or is killed, the database is as it was before.
            """)

    @OptionGroup var embedderOptions: EmbedderOptions

    @Option(help: "A folder or a file of documents.")
    var docs: String

    @Option(help: "The database file (made if missing).")
    var db: String

    @Option(help: "Passages of N sentences (sentences:N, ICU's sentence boundaries) or of whole words within N embedder tokens (tokens:N).")
    var chunk = "sentences:2"

    @Option(help: "A file that is not UTF-8 (or a .jsonl line without text): fail (the run stops, nothing is written) or skip (named, left out).")
    var badFiles: Indexer.BadFiles = .fail

    @Option(parsing: .unconditional, help: "Texts per encoder pass.")
    var batchSize = 32

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: .hidden)
    var killBeforeCommit = false  // tests: the process dies after every write, before the commit

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        threadOptions.configure()
        var progress: Progress?
        try CommandFailure.exits("rag index", beforeMessage: { progress?.message("") }) {
            var options = Indexer.Options()
            options.chunking = try Chunking(chunk)
            options.badFiles = badFiles
            options.batchSize = batchSize
            if killBeforeCommit { options.beforeCommit = { kill(getpid(), SIGKILL) } }
            let (embedder, identity) = try embedderOptions.load()
            let indexer = try Indexer(embedder: embedder, identity: identity, options: options)
            let database = try RAGDatabase.open(db, create: true)
            let start = Date()
            let summary = try indexer.run(docs: docs, into: database) { event in
                switch event {
                case let .found(files, changed):
                    printError("\(files) file\(files == 1 ? "" : "s") found, \(changed) new or changed")
                case let .skipped(path, reason):
                    printError("skipped \(path): \(reason)")
                case let .embedded(done, total):
                    if progress == nil { progress = Progress(total: total, label: "embedding") }
                    progress?.update(done)
                case let .buildingIndex(passages):
                    printError("building the HNSW index over \(Format.grouped(passages)) passages")
                }
            }
            let s = summary
            print("indexed \(db): \(s.indexed) file\(s.indexed == 1 ? "" : "s") new or changed, \(s.unchanged) unchanged, \(s.removed) removed"
                + (s.skipped > 0 ? ", \(s.skipped) skipped" : "")
                + "; +\(Format.grouped(s.passagesAdded)) −\(Format.grouped(s.passagesRemoved)) passages, \(Format.grouped(s.totalPassages)) in all"
                + " (\(options.chunking), \(identity.name), \(identity.dimension) dimensions)"
                + (s.truncated > 0 ? "; \(s.truncated) passages longer than the embedder's \(embedder.maxLength) tokens were truncated" : "")
                + String(format: " in %.1f s", Date().timeIntervalSince(start)))
        }
    }
}
