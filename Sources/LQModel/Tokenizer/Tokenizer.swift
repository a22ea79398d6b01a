import Foundation

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, detail: String)
    case unsupported(path: String, what: String)
    /// Ids the model has no embedding for (config.json's vocab_size).
    case beyondModel(path: String, largestID: Int, vocabSize: Int)

    public var description: String {
        switch self {
        case let .unreadable(path, detail): return "\(path): \(detail)"
        case let .unsupported(path, what): return "\(path): \(what) is not supported yet"
        case let .beyondModel(path, largest, vocab):
            return "\(path) has ids up to \(largest), but config.json's vocab_size is \(vocab): ids from \(vocab) on have no embedding"
        }
    }
}

/// Text ↔ token ids. Tests substitute small fakes; models load `tokenizer.json`.
public protocol Tokenizer: Sendable {
    var vocabularySize: Int { get }
    /// Ids for `text`, with the post-processor's special tokens (BOS, ...) when `addSpecialTokens`.
    /// Throws when the tokenizer's own pattern cannot finish on `text` (a Split regex that backtracks without bound).
    func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int]
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
    func id(of token: String) -> Int?
}

/// Token ids index the tokenizers' tables: an id outside 0..<maxTokenID (16.7 M, far above any
/// real vocabulary) is refused by name rather than trapping or allocating without bound.
let maxTokenID = 1 << 24

/// A tokenizer.json id, checked: an exact integer (not 1.5, not true) in 0..<maxTokenID.
func checkedTokenID(_ id: Any?, token: String, path: String) throws -> Int {
    guard let number = id as? NSNumber, String(cString: number.objCType) != "c", number.doubleValue.magnitude < 1e18,
          Double(number.int64Value) == number.doubleValue, case let n = Int(number.int64Value), n >= 0, n < maxTokenID else {
        throw TokenizerError.unreadable(path: path, detail: "token \(String(reflecting: token)) has id \(id.map { "\($0)" } ?? "none"), outside 0..<\(maxTokenID)")
    }
    return n
}

/// The id → token table of a vocabulary, sized by its entries rather than by its largest id.
func tokenTable(_ vocab: [String: Int]) -> (tokens: [Int: String], size: Int) {
    var tokens: [Int: String] = [:]
    tokens.reserveCapacity(vocab.count)
    for (k, id) in vocab { tokens[id] = k }
    return (tokens, (vocab.values.max() ?? -1) + 1)
}

/// Loads the tokenizer of a model directory and checks its ids against the model's embedding
/// table (`vocabularySize`, config.json's vocab_size): an id past it would index outside the table.
public func loadTokenizer(directory: String, modelVocabularySize: Int) throws -> any Tokenizer {
    let tokenizer = try loadTokenizer(directory: directory)
    guard tokenizer.vocabularySize <= modelVocabularySize else {
        throw TokenizerError.beyondModel(path: directory + "/tokenizer.json", largestID: tokenizer.vocabularySize - 1, vocabSize: modelVocabularySize)
    }
    return tokenizer
}

/// Loads the tokenizer of a model directory (tokenizer.json).
public func loadTokenizer(directory: String) throws -> any Tokenizer {
    let path = directory + "/tokenizer.json"
    guard FileManager.default.fileExists(atPath: path) else {
        throw TokenizerError.unreadable(path: directory, detail: "no tokenizer.json")
    }
    guard let data = FileManager.default.contents(atPath: path),
          let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TokenizerError.unreadable(path: path, detail: "not a JSON object")
    }
    switch (json["model"] as? [String: Any])?["type"] as? String {
    case "WordPiece": return try WordPieceTokenizer(json: json, path: path)
    default: return try BPETokenizer(json: json, path: path)
    }
}
