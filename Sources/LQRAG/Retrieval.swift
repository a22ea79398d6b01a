import Foundation
import LQModel
import LQTensor

/// How the retrieved candidates are ranked before the best few go to the model.
public enum Judge: String, CaseIterable, Sendable {
    /// The Quantized Influence Measure of each candidate given the question (the paper's judge).
    case qim
    /// Cosine similarity, the order the index found them in.
    case cosine
    /// Both, each min–max scaled over the candidates, weighted by `blendWeight` (cosine's share).
    case blend
}

/// A retrieved passage with what each judge sees in it.
public struct Candidate: Sendable {
    public let passage: StoredPassage
    public let cosine: Double
    public let qim: Double
    /// The judge's score (higher is better).
    public var score: Double
}

/// Nearest passages of a question, from the HNSW index or by exact search, then judged.
public final class Retriever {
    public let database: RAGDatabase
    public let embedder: SentenceEmbedder
    let dimension: Int
    private var ann: HNSWIndex?
    private var stored: (ids: [Int], vectors: Tensor)?

    public struct Options: Sendable {
        /// Candidates the index returns for the judge.
        public var candidates = 10
        /// HNSW search breadth (at least `candidates` is used).
        public var ef = 128
        /// Exact search over every stored vector (the oracle of the index) instead of HNSW.
        public var exact = false
        public var judge = Judge.qim
        /// Passages kept after judging.
        public var topN = 2
        public var levels = QIM.defaultLevels
        public var blendWeight = 0.5
        public init() {}
    }

    /// Refuses a database made by another embedder.
    public init(database: RAGDatabase, embedder: SentenceEmbedder, identity: EmbedderIdentity) throws {
        guard try database.embedder() != nil else { throw RAGError.emptyIndex(path: database.path) }
        try database.check(identity)
        self.database = database
        self.embedder = embedder
        dimension = identity.dimension
    }

    /// The question's unit vector as the passages were embedded.
    public func embed(_ question: String) -> [Float] {
        let v = embedder.embed([question])
        if !embedder.settings.normalize { normalizeL2(v.pointer, count: dimension) }
        return v.array
    }

    /// Loads the HNSW index (or for exact search every vector) once.
    public func load(exact: Bool) throws {
        if exact {
            if stored == nil { stored = try database.allVectors(dimension: dimension) }
        } else if ann == nil {
            ann = try database.annIndex(dimension: dimension)
        }
    }

    /// The ids of the `k` passages nearest to `query` with their inner products, nearest first.
    public func nearest(_ query: [Float], k: Int, exact: Bool, ef: Int) throws -> [(id: Int, score: Float)] {
        try load(exact: exact)
        if exact, let (ids, vectors) = stored {
            var scores = [Float](repeating: 0, count: ids.count)
            query.withUnsafeBufferPointer { gemv(vectors.matrix, x: $0.baseAddress!, y: &scores) }
            // Ties broken by id, so the oracle is one order.
            let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : ids[$0] < ids[$1] }
            return order.prefix(k).map { (ids[$0], scores[$0]) }
        }
        return try query.withUnsafeBufferPointer { try ann!.search($0.baseAddress!, k: k, ef: ef) }.map { ($0.label, $0.score) }
    }

    /// The candidates for `question` ranked by the judge, best first (all of them: the caller keeps
    /// `options.topN`), with the query vector.
    public func retrieve(_ question: String, options: Options) throws -> [Candidate] {
        let query = embed(question)
        let found = try nearest(query, k: options.candidates, exact: options.exact, ef: options.ef)
        return try judge(query: query, ids: found.map(\.id), options: options)
    }

    /// Scores the passages `ids` for `query` and orders them by `options.judge`.
    public func judge(query: [Float], ids: [Int], options: Options) throws -> [Candidate] {
        let passages = try database.passages(ids)
        let vectors = try database.vectors(of: passages.map(\.id), dimension: dimension)
        var candidates = zip(passages, vectors).map { passage, v in
            Candidate(passage: passage, cosine: zip(query, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) },
                      qim: QIM.score(query: query, passage: v, levels: options.levels), score: 0)
        }
        switch options.judge {
        case .qim: for i in candidates.indices { candidates[i].score = candidates[i].qim }
        case .cosine: for i in candidates.indices { candidates[i].score = candidates[i].cosine }
        case .blend:
            let cos = Self.minMaxScaled(candidates.map(\.cosine)), qim = Self.minMaxScaled(candidates.map(\.qim))
            for i in candidates.indices { candidates[i].score = options.blendWeight * cos[i] + (1 - options.blendWeight) * qim[i] }
        }
        // Ties by cosine, then by id: one order for one database.
        return candidates.sorted {
            ($0.score, $0.cosine, -$0.passage.id) > ($1.score, $1.cosine, -$1.passage.id)
        }
    }

    /// Values mapped to [0, 1] by their range (all 0 when they are equal).
    static func minMaxScaled(_ values: [Double]) -> [Double] {
        guard let lo = values.min(), let hi = values.max(), hi > lo else { return values.map { _ in 0 } }
        return values.map { ($0 - lo) / (hi - lo) }
    }
}
