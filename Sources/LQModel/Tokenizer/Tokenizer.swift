import Foundation

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, detail: String)
    case unsupported(path: String, what: String)

    public var description: String {
        switch self {
        case let .unreadable(path, detail): return "\(path): \(detail)"
        case let .unsupported(path, what): return "\(path): \(what) is not supported yet"
        }
    }
}

/// Text ↔ token ids. Tests substitute small fakes; models load `tokenizer.json`.
public protocol Tokenizer: Sendable {
    var vocabularySize: Int { get }
    /// Ids for `text`, with the post-processor's special tokens (BOS, ...) when `addSpecialTokens`.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
    func id(of token: String) -> Int?
}

/// Token ids index the tokenizers' tables: an id outside 0..<maxTokenID (16.7 M, far above any
/// real vocabulary) is refused by name rather than trapping or allocating without bound.
let maxTokenID = 1 << 24

/// A tokenizer.json id, checked.
func checkedTokenID(_ id: Any?, token: String, path: String) throws -> Int {
    guard let n = (id as? NSNumber)?.intValue, n >= 0, n < maxTokenID else {
        throw TokenizerError.unreadable(path: path, detail: "token \(String(reflecting: token)) has id \(id.map { "\($0)" } ?? "none"), outside 0..<\(maxTokenID)")
    }
    return n
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
