import Foundation
import LQFormats
import LQModel
import LQTensor

/// Brings a database up to date with a folder (or one file) of documents: new and changed files
/// are chunked and embedded, their old passages replaced; files gone from the folder lose theirs;
/// the HNSW index is rebuilt. All of it is one SQLite transaction: a run that fails or is killed
/// leaves the database as it was.
public struct Indexer {
    public enum BadFiles: String, CaseIterable, Sendable {
        /// A file that is not UTF-8 (or a .jsonl record without text) stops the run.
        case fail
        /// It is reported and left out; what the database held for it stays.
        case skip
    }

    public struct Options {
        public var chunking: Chunking = .sentences(2)
        public var badFiles: BadFiles = .fail
        public var batchSize = 32
        public var hnsw = HNSWParameters()
        /// Called inside the transaction after the last write (tests: a run killed there).
        public var beforeCommit: (() -> Void)?
        public init() {}
    }

    public enum Event {
        /// The files found, and how many of them are new or changed.
        case found(files: Int, changed: Int)
        case skipped(path: String, reason: String)
        /// Passages embedded so far, of all changed files'.
        case embedded(done: Int, total: Int)
        case buildingIndex(passages: Int)
    }

    public struct Summary: Equatable {
        public var files = 0
        public var unchanged = 0
        public var indexed = 0
        public var removed = 0
        public var skipped = 0
        public var passagesAdded = 0
        public var passagesRemoved = 0
        public var truncated = 0
        public var totalPassages = 0
    }

    public static let extensions: Set<String> = ["txt", "md", "jsonl"]

    let embedder: SentenceEmbedder
    let identity: EmbedderIdentity
    let options: Options

    public init(embedder: SentenceEmbedder, identity: EmbedderIdentity, options: Options) throws {
        if case let .tokens(n) = options.chunking, n > embedder.maxLength - embedder.tokenizer.specialTokensAdded {
            throw RAGError.chunkTooLong(tokens: n, maxLength: embedder.maxLength)
        }
        self.embedder = embedder
        self.identity = identity
        self.options = options
    }

    /// The document files at `path`: the file itself, or those under the folder with a known
    /// extension (hidden ones left out), sorted.
    public static func documentFiles(_ path: String) throws -> [String] {
        let root = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory) else { throw RAGError.noDocuments(path: path) }
        guard isDirectory.boolValue else {
            guard extensions.contains(root.pathExtension.lowercased()) else { throw RAGError.noDocuments(path: path) }
            return [root.path]
        }
        guard let walk = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles]) else {
            throw RAGError.noDocuments(path: path)
        }
        var files: [String] = []
        for case let url as URL in walk where extensions.contains(url.pathExtension.lowercased()) {
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { files.append(url.standardizedFileURL.path) }
        }
        guard !files.isEmpty else { throw RAGError.noDocuments(path: path) }
        return files.sorted()
    }

    /// A file's passages: each .jsonl record's `text`, or the whole file, chunked.
    func chunks(of path: String, data: Data) throws -> [Chunk] {
        let text = try EvaluationText.decoded(data, path: path, strict: true)
        // A word's tokens as the embedder counts them (its lowercasing included), specials aside.
        let chunker = Chunker(chunking: options.chunking) { [embedder] word in
            embedder.tokenize(String(word)).ids.count - embedder.tokenizer.specialTokensAdded
        }
        if let records = try EvaluationText.records(text, path: path) {
            return try records.flatMap { try chunker.chunks(of: $0.text, firstLine: $0.line) }
        }
        return try chunker.chunks(of: text)
    }

    /// Unit vectors [sequences, dimension] of token ids, a batch at a time.
    func embed(_ sequences: [[Int]], onEvent: (Event) -> Void) -> Tensor {
        let d = embedder.dimension
        let vectors = Tensor(uninitialized: [sequences.count, d])
        for start in stride(from: 0, to: sequences.count, by: options.batchSize) {
            let end = min(sequences.count, start + options.batchSize)
            let batch = embedder.embed(tokens: Array(sequences[start..<end]), batchSize: options.batchSize)
            (vectors.pointer + start * d).update(from: batch.pointer, count: batch.count)
            onEvent(.embedded(done: end, total: sequences.count))
        }
        if !embedder.settings.normalize {
            // Inner product is cosine only between unit vectors.
            for i in 0..<sequences.count { normalizeL2(vectors.pointer + i * d, count: d) }
        }
        return vectors
    }

    /// Indexes `docs` into `database`.
    public func run(docs: String, into database: RAGDatabase, onEvent: (Event) -> Void = { _ in }) throws -> Summary {
        let files = try Self.documentFiles(docs)
        let root = URL(fileURLWithPath: docs).standardizedFileURL.path
        let db = database.db
        return try db.transaction {
            try database.check(identity)
            try database.record(identity)
            var summary = Summary()
            summary.files = files.count
            let stored = Dictionary(uniqueKeysWithValues: try db.query("SELECT path, id, fingerprint, chunking FROM files") {
                ($0.text(0), (id: $0.int(1), fingerprint: $0.text(2), chunking: $0.text(3)))
            })
            // Read and chunk every new or changed file first, so the embedding has a total.
            var pending: [(path: String, fingerprint: String, chunks: [Chunk])] = []
            for path in files {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                let fingerprint = "crc32:" + String(data.withUnsafeBytes { crc32($0) }, radix: 16) + " bytes:\(data.count)"
                if let old = stored[path], old.fingerprint == fingerprint, old.chunking == options.chunking.description {
                    summary.unchanged += 1
                    continue
                }
                do {
                    pending.append((path, fingerprint, try chunks(of: path, data: data)))
                } catch let error as TextError where options.badFiles == .skip {
                    onEvent(.skipped(path: path, reason: "\(error)"))
                    summary.skipped += 1
                } catch let error as ModelError where options.badFiles == .skip {
                    onEvent(.skipped(path: path, reason: "\(error)"))
                    summary.skipped += 1
                }
            }
            onEvent(.found(files: files.count, changed: pending.count))
            let tokenized = pending.flatMap { $0.chunks.map { embedder.tokenize($0.text) } }
            summary.truncated = tokenized.filter(\.truncated).count
            let vectors = embed(tokenized.map(\.ids), onEvent: onEvent)
            let d = embedder.dimension

            /// Deletes a file's row and (by cascade) its passages; returns how many passages went.
            func remove(_ file: Int) throws -> Int {
                let n = try db.query("SELECT count(*) FROM passages WHERE file = ?", [.int(file)]) { $0.int(0) }[0]
                try db.run("DELETE FROM files WHERE id = ?", [.int(file)])
                return n
            }
            var row = 0
            let insert = try db.prepare("INSERT INTO passages (file, ordinal, line, text, tokens, vector) VALUES (?, ?, ?, ?, ?, ?)")
            for file in pending {
                if let old = stored[file.path] { summary.passagesRemoved += try remove(old.id) }
                try db.run("INSERT INTO files (path, fingerprint, chunking) VALUES (?, ?, ?)",
                           [.text(file.path), .text(file.fingerprint), .text(options.chunking.description)])
                let fileID = Int(db.lastInsertedRow)
                for (ordinal, chunk) in file.chunks.enumerated() {
                    let vector = Array(UnsafeRawBufferPointer(start: vectors.pointer + row * d, count: d * MemoryLayout<Float>.size))
                    try insert.bind([.int(fileID), .int(ordinal), .int(chunk.line), .text(chunk.text), .int(tokenized[row].ids.count), .blob(vector)])
                    while try insert.step() {}
                    row += 1
                }
                summary.indexed += 1
                summary.passagesAdded += file.chunks.count
            }
            // Files that were under the folder and are gone.
            let present = Set(files)
            for (path, old) in stored where !present.contains(path) && (path == root || path.hasPrefix(root + "/")) {
                summary.passagesRemoved += try remove(old.id)
                summary.removed += 1
            }
            summary.totalPassages = try database.passageCount
            guard summary.totalPassages > 0 else { throw RAGError.noPassages(path: docs) }
            let built = (try database.meta("hnsw_m"), try database.meta("hnsw_ef_construction"))
            if summary.indexed > 0 || summary.removed > 0 || built != ("\(options.hnsw.m)", "\(options.hnsw.efConstruction)") {
                onEvent(.buildingIndex(passages: summary.totalPassages))
                _ = try database.rebuildANN(dimension: d, parameters: options.hnsw)
            }
            options.beforeCommit?()
            return summary
        }
    }
}
