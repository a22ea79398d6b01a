import Foundation
import LQFormats
import LQModel
import LQTensor

/// What makes two embedders' vectors comparable: the model's name (its directory's), the vector
/// length, and the weights themselves (CRC-32 of the transformer's safetensors files).
public struct EmbedderIdentity: Equatable, Sendable {
    public let name: String
    public let dimension: Int
    public let weights: String

    public init(name: String, dimension: Int, weights: String) {
        self.name = name
        self.dimension = dimension
        self.weights = weights
    }

    public init(embedder: SentenceEmbedder, directory: String) throws {
        let dir = embedder.settings.transformerDirectory
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".safetensors") }.sorted()
        let crcs = try files.map { name in
            let file = try MappedFile(path: dir + "/" + name)
            return "\(name):" + withExtendedLifetime(file) { String(crc32(file.bytes), radix: 16) }
        }
        self.init(name: URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent, dimension: embedder.dimension,
                  weights: crcs.joined(separator: " "))
    }
}

/// A passage as stored: its id, file, line, text and tokens seen by the embedder.
public struct StoredPassage: Equatable, Sendable {
    public let id: Int
    public let path: String
    public let line: Int
    public let text: String

    /// "file:line", the file relative to the working directory when it is under it.
    public var source: String { RAGDatabase.displayed(path) + ":\(line)" }
}

/// The database of `lqlora rag`: one SQLite file holding the passages and their vectors, the
/// HNSW index over them (a blob written in the same transaction, so the two never disagree),
/// the embedder it was made with, and the answers with their feedback.
public final class RAGDatabase {
    public let path: String
    let db: SQLiteDatabase

    /// meta's `format` value; another value is another layout.
    static let format = "lqlora-rag 1"

    static let schema = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE files (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL, chunking TEXT NOT NULL);
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY AUTOINCREMENT, file INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, line INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL, vector BLOB NOT NULL);
        CREATE INDEX passages_by_file ON passages(file);
        CREATE TABLE ann (id INTEGER PRIMARY KEY CHECK (id = 1), passages INTEGER NOT NULL, bytes BLOB NOT NULL);
        CREATE TABLE answers (
            id INTEGER PRIMARY KEY AUTOINCREMENT, asked_at TEXT NOT NULL, question TEXT NOT NULL, messages TEXT NOT NULL,
            answer TEXT NOT NULL, model TEXT NOT NULL, adapter TEXT, judge TEXT NOT NULL);
        CREATE TABLE answer_sources (
            answer INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE, rank INTEGER NOT NULL, passage INTEGER NOT NULL,
            source TEXT NOT NULL, text TEXT NOT NULL, cosine REAL NOT NULL, qim REAL NOT NULL, PRIMARY KEY (answer, rank));
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT, answer INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE, given_at TEXT NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject')), correction TEXT);
        """

    private init(path: String, db: SQLiteDatabase) {
        self.path = path
        self.db = db
    }

    /// Opens the database at `path`; `create` makes it (empty) when there is no file.
    public static func open(_ path: String, create: Bool = false) throws -> RAGDatabase {
        let exists = FileManager.default.fileExists(atPath: path)
        guard exists || create else { throw RAGError.notFound(path: path) }
        let database = RAGDatabase(path: path, db: try SQLiteDatabase(path: path, create: create))
        let tables: [String]
        do {
            tables = try database.db.query("SELECT name FROM sqlite_master WHERE type = 'table'") { $0.text(0) }
        } catch let error as SQLiteError {
            throw RAGError.notADatabase(path: path, detail: error.message)
        }
        if tables.isEmpty && create {
            // Write-ahead logging: `rag ask` reads while an indexing run writes (a rollback journal
            // would lock readers out once the run's pages spill to the file); a killed run's frames
            // are never committed, so the database stays as it was.
            try database.db.execute("PRAGMA journal_mode = WAL")
            try database.db.transaction {
                try database.db.execute(schema)
                try database.setMeta("format", format)
            }
        } else {
            guard tables.contains("meta") else { throw RAGError.notADatabase(path: path, detail: "it has no meta table") }
            let stored = try database.meta("format")
            guard stored == format else { throw RAGError.notADatabase(path: path, detail: "format \(stored ?? "missing"), this lqlora reads \(format)") }
        }
        return database
    }

    func meta(_ key: String) throws -> String? {
        try db.query("SELECT value FROM meta WHERE key = ?", [.text(key)]) { $0.text(0) }.first
    }

    func setMeta(_ key: String, _ value: String) throws {
        try db.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [.text(key), .text(value)])
    }

    /// The embedder the passages were embedded with (nil before the first indexing).
    public func embedder() throws -> EmbedderIdentity? {
        guard let name = try meta("embedder_name"), let dimension = try meta("embedder_dimension").flatMap(Int.init),
              let weights = try meta("embedder_weights") else { return nil }
        return EmbedderIdentity(name: name, dimension: dimension, weights: weights)
    }

    /// Refuses an embedder other than the one the database was made with, naming what differs.
    public func check(_ given: EmbedderIdentity) throws {
        guard let stored = try embedder() else { return }
        if stored.dimension != given.dimension {
            throw RAGError.otherEmbedder(path: path, property: "dimension", stored: "\(stored.dimension)", given: "\(given.dimension)")
        }
        if stored.name != given.name {
            throw RAGError.otherEmbedder(path: path, property: "model name", stored: "'\(stored.name)'", given: "'\(given.name)'")
        }
        if stored.weights != given.weights {
            throw RAGError.otherEmbedder(path: path, property: "weights (CRC-32)", stored: stored.weights, given: given.weights)
        }
    }

    func record(_ identity: EmbedderIdentity) throws {
        try setMeta("embedder_name", identity.name)
        try setMeta("embedder_dimension", "\(identity.dimension)")
        try setMeta("embedder_weights", identity.weights)
    }

    public var passageCount: Int {
        get throws { try db.query("SELECT count(*) FROM passages") { $0.int(0) }[0] }
    }

    /// The passages with these ids, in the order given (ids no longer stored are left out).
    public func passages(_ ids: [Int]) throws -> [StoredPassage] {
        let statement = try db.prepare("SELECT p.id, f.path, p.line, p.text FROM passages p JOIN files f ON f.id = p.file WHERE p.id = ?")
        return try ids.compactMap { id in
            try statement.bind([.int(id)])
            guard try statement.step() else { return nil }
            return StoredPassage(id: statement.int(0), path: statement.text(1), line: statement.int(2), text: statement.text(3))
        }
    }

    /// Every passage's id and vector, in id order (the exact search's operands).
    func allVectors(dimension: Int) throws -> (ids: [Int], vectors: Tensor) {
        let vectors = Tensor(uninitialized: [try passageCount, dimension])
        var ids: [Int] = []
        let statement = try db.prepare("SELECT id, vector FROM passages ORDER BY id")
        while try statement.step() {
            try copyVector(statement, into: vectors.pointer + ids.count * dimension, dimension: dimension)
            ids.append(statement.int(0))
        }
        return (ids, vectors)
    }

    /// The vectors of the passages `ids`, in that order.
    func vectors(of ids: [Int], dimension: Int) throws -> [[Float]] {
        let statement = try db.prepare("SELECT id, vector FROM passages WHERE id = ?")
        return try ids.map { id in
            try statement.bind([.int(id)])
            guard try statement.step() else { throw RAGError.notADatabase(path: path, detail: "passage \(id) is in the index but not stored") }
            var v = [Float](repeating: 0, count: dimension)
            try copyVector(statement, into: &v, dimension: dimension)
            return v
        }
    }

    /// Column 1 of the current row, a vector of `dimension` floats.
    private func copyVector(_ statement: SQLiteDatabase.Statement, into out: UnsafeMutablePointer<Float>, dimension: Int) throws {
        try statement.withBlob(1) { blob in
            guard blob.count == dimension * MemoryLayout<Float>.size else {
                throw RAGError.notADatabase(path: path, detail: "passage \(statement.int(0)) has \(blob.count / 4) floats, not \(dimension)")
            }
            UnsafeMutableRawPointer(out).copyMemory(from: blob.baseAddress!, byteCount: blob.count)
        }
    }

    /// The HNSW index as the last indexing run stored it.
    func annIndex(dimension: Int) throws -> HNSWIndex {
        let statement = try db.prepare("SELECT bytes FROM ann WHERE id = 1")
        guard try statement.step() else { throw RAGError.emptyIndex(path: path) }
        return try statement.withBlob(0) { try HNSWIndex.load($0, dimension: dimension) }
    }

    /// Rebuilds the HNSW index over every passage (in id order, so the same passages give the same
    /// graph) and stores it; called inside the indexing transaction.
    func rebuildANN(dimension: Int, parameters: HNSWParameters) throws -> Int {
        let (ids, vectors) = try allVectors(dimension: dimension)
        let index = try HNSWIndex.build(vectors: vectors.pointer, labels: ids, dimension: dimension, parameters: parameters)
        try db.run("INSERT INTO ann (id, passages, bytes) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET passages = excluded.passages, bytes = excluded.bytes",
                   [.int(ids.count), .blob(try index.serialized())])
        try setMeta("hnsw_m", "\(parameters.m)")
        try setMeta("hnsw_ef_construction", "\(parameters.efConstruction)")
        return ids.count
    }

    /// `path` relative to the working directory when it is under it.
    static func displayed(_ path: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath + "/"
        return path.hasPrefix(cwd) ? String(path.dropFirst(cwd.count)) : path
    }

    /// Now, as ISO 8601 in UTC.
    static func timestamp() -> String { ISO8601DateFormatter().string(from: Date()) }
}
