/// What can go wrong indexing, retrieving and recording answers, each naming its file or value.
public enum RAGError: Error, CustomStringConvertible, Equatable {
    case badChunking(String)
    case textBreak(String)
    case noDocuments(path: String)
    case noPassages(path: String)
    case notFound(path: String)
    case notADatabase(path: String, detail: String)
    /// The database was made with another embedder: which property differs, stored and given.
    case otherEmbedder(path: String, property: String, stored: String, given: String)
    case chunkTooLong(tokens: Int, maxLength: Int)
    case emptyIndex(path: String)
    case hnsw(String)
    case noAnswer(path: String, id: Int?)
    case nothingToExport(path: String)

    public var description: String {
        switch self {
        case let .badChunking(spec): return "--chunk '\(spec)': expected sentences:N or tokens:N with N ≥ 1"
        case let .textBreak(error): return "ICU's sentence iterator failed: \(error)"
        case let .noDocuments(path): return "\(path): no .txt, .md or .jsonl files to index"
        case let .noPassages(path): return "\(path): the documents hold no text to index"
        case let .notFound(path): return "\(path): no such database (make one with lqlora rag index)"
        case let .notADatabase(path, detail): return "\(path): not an lqlora rag database (\(detail))"
        case let .otherEmbedder(path, property, stored, given):
            return "\(path) was indexed by another embedder: its \(property) is \(stored), the given embedder's \(given) (index into a new --db, or give the embedder it was made with)"
        case let .chunkTooLong(tokens, maxLength):
            return "--chunk tokens:\(tokens) is more than the embedder reads (\(maxLength) tokens with its special tokens)"
        case let .emptyIndex(path): return "\(path) holds no passages"
        case let .hnsw(message): return "hnswlib: \(message)"
        case let .noAnswer(path, id): return id.map { "\(path) has no answer \($0)" } ?? "\(path) has no answers yet (ask one with lqlora rag ask)"
        case let .nothingToExport(path): return "\(path) has no accepted or corrected answers to export"
        }
    }
}
