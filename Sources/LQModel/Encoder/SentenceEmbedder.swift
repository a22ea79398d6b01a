import Foundation
import LQTensor

/// How sentence-transformers' Pooling module makes one vector of a sequence's hidden states.
public enum PoolingMode: String, CaseIterable, Sendable {
    case cls, max, mean
    case meanSqrtLength = "mean_sqrt_len_tokens"

    /// Every mode sentence-transformers knows, in the order its legacy `pooling_mode_*_tokens`
    /// keys concatenate them; the two it knows that we do not run are refused by name.
    static let legacyKeys: [(key: String, mode: String)] = [
        ("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"), ("pooling_mode_weightedmean_tokens", "weightedmean"),
        ("pooling_mode_lasttoken", "lasttoken"),
    ]
}

/// What a sentence-transformers directory says to do after the transformer: modules.json's
/// modules in order (Transformer, Pooling, optionally Normalize), the pooling config, and
/// sentence_bert_config.json's `max_seq_length` and `do_lower_case`.
public struct SentenceTransformerSettings: Sendable {
    /// The directory of the transformer's config.json, weights and tokenizer.
    public var transformerDirectory: String
    /// Concatenated in this order (one mode for nearly every model).
    public var pooling: [PoolingMode]
    /// The hidden size the Pooling config declares, with its file and key (checked against the encoder's).
    public var poolingDimension: (path: String, key: String, value: Int)?
    /// L2 normalisation after pooling (a Normalize module).
    public var normalize: Bool
    /// Tokens per sequence, [CLS] and [SEP] included; nil: the tokenizer's model_max_length capped
    /// by the model's positions, as sentence-transformers takes it then.
    public var maxSequenceLength: Int?
    public var lowercase: Bool

    /// modules.json's type names: sentence-transformers 2 to 5 write the first, 6 the second.
    static let transformerTypes = ["sentence_transformers.models.Transformer", "sentence_transformers.base.modules.transformer.Transformer"]
    static let poolingTypes = ["sentence_transformers.models.Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"]
    static let normalizeTypes = ["sentence_transformers.models.Normalize", "sentence_transformers.base.modules.normalize.Normalize"]

    public init(directory: String) throws {
        let modulesPath = directory + "/modules.json"
        guard FileManager.default.fileExists(atPath: modulesPath) else {
            // sentence-transformers loads a plain transformers checkpoint as Transformer + mean pooling.
            transformerDirectory = directory
            pooling = [.mean]
            poolingDimension = nil
            normalize = false
            (maxSequenceLength, lowercase) = try Self.transformerSettings(directory)
            return
        }
        guard let data = FileManager.default.contents(atPath: modulesPath),
              let modules = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { throw ModelError.badConfig(path: modulesPath, key: "(file)", detail: "is not a JSON list of modules") }
        var transformer: String?, pooling: [PoolingMode]?, poolingDimension: (String, String, Int)?, normalize = false
        for (i, module) in modules.enumerated() {
            let entry = ConfigReader(json: module, path: modulesPath)
            let type = try entry.string("type"), sub = try entry.string("path", default: "")
            let dir = sub.isEmpty ? directory : directory + "/" + sub
            let order = "module \(i) (\(type))"
            if Self.transformerTypes.contains(type), i == 0 {
                transformer = dir
            } else if Self.poolingTypes.contains(type), transformer != nil, pooling == nil {
                (pooling, poolingDimension) = try Self.pooling(dir + "/config.json")
            } else if Self.normalizeTypes.contains(type), pooling != nil, !normalize {
                normalize = true
            } else if (Self.transformerTypes + Self.poolingTypes + Self.normalizeTypes).contains(type) {
                throw ModelError.unsupported(path: modulesPath, what: "\(order) in this place (Transformer, Pooling, then optionally Normalize are)")
            } else {
                throw ModelError.unsupported(path: modulesPath, what: "\(order) (Transformer, Pooling and Normalize are)")
            }
        }
        guard let transformer, let pooling else {
            throw ModelError.unsupported(path: modulesPath, what: "a pipeline without a Transformer and a Pooling module")
        }
        transformerDirectory = transformer
        self.pooling = pooling
        self.poolingDimension = poolingDimension
        self.normalize = normalize
        (maxSequenceLength, lowercase) = try Self.transformerSettings(transformer)
        let stConfig = directory + "/config_sentence_transformers.json"
        if FileManager.default.fileExists(atPath: stConfig) {
            let c = try ConfigReader(path: stConfig)
            if let name = c.json["default_prompt_name"] as? String {
                throw ModelError.unsupported(path: stConfig, what: "default_prompt_name '\(name)' (a prompt put before every text)")
            }
        }
    }

    /// sentence_bert_config.json's `max_seq_length` (sentence-transformers 6 keeps it as the
    /// tokenizer's model_max_length instead) and `do_lower_case`, when the file is there.
    static func transformerSettings(_ directory: String) throws -> (Int?, Bool) {
        let path = directory + "/sentence_bert_config.json"
        guard FileManager.default.fileExists(atPath: path) else { return (nil, false) }
        let c = try ConfigReader(path: path)
        let task = try c.string("transformer_task", default: "feature-extraction")
        guard task == "feature-extraction" else { throw ModelError.unsupported(path: path, what: "transformer_task '\(task)'") }
        let length = c.json["max_seq_length"] is NSNull || c.json["max_seq_length"] == nil ? nil : try c.int("max_seq_length")
        return (length, try c.bool("do_lower_case", default: false))
    }

    /// The Pooling module's modes: `pooling_mode` (a name or a list), or the legacy booleans
    /// (none set means mean, as sentence-transformers reads them); and its input dimension.
    static func pooling(_ path: String) throws -> ([PoolingMode], (String, String, Int)?) {
        let c = try ConfigReader(path: path)
        let dimension = try ["embedding_dimension", "word_embedding_dimension"].first { c.json[$0] != nil }.map { (path, $0, try c.int($0)) }
        var names: [String]
        if let v = c.json["pooling_mode"] {
            if let one = v as? String { names = [one] } else if let many = v as? [String], !many.isEmpty { names = many } else {
                throw c.bad("pooling_mode", "must be a mode name or a list of them, not \(v)")
            }
        } else {
            names = try PoolingMode.legacyKeys.filter { try c.bool($0.key, default: false) }.map(\.mode)
            if names.isEmpty { names = ["mean"] }
        }
        let modes = try names.map { name in
            guard let mode = PoolingMode(rawValue: name) else {
                throw ModelError.unsupported(path: path, what: "pooling mode '\(name)' (\(PoolingMode.allCases.map(\.rawValue).joined(separator: ", ")) are)")
            }
            return mode
        }
        return (modes, dimension)
    }
}

/// Sentence embeddings as sentence-transformers' `encode` computes them: the tokenizer (with
/// [CLS]/[SEP], truncated to max_seq_length), the encoder's last hidden states, the Pooling
/// module's modes over each sequence's tokens, then L2 normalisation when the pipeline has it.
public final class SentenceEmbedder: @unchecked Sendable {
    public let settings: SentenceTransformerSettings
    public let encoder: BertEncoder
    public let tokenizer: WordPieceTokenizer
    /// Tokens per sequence after truncation, [CLS] and [SEP] included.
    public let maxLength: Int

    /// Floats per embedding.
    public var dimension: Int { settings.pooling.count * encoder.config.hiddenSize }

    public init(directory: String) throws {
        settings = try SentenceTransformerSettings(directory: directory)
        let dir = settings.transformerDirectory
        encoder = try BertEncoder(directory: dir)
        guard let wordPiece = try loadTokenizer(directory: dir) as? WordPieceTokenizer else {
            throw ModelError.unsupported(path: dir + "/tokenizer.json", what: "a tokenizer other than WordPiece for a BERT encoder")
        }
        tokenizer = wordPiece
        // Every sequence then has a token to pool, the empty text included.
        guard tokenizer.specialTokensAdded > 0 else {
            throw ModelError.unsupported(path: dir + "/tokenizer.json", what: "a tokenizer whose post-processor adds no [CLS]/[SEP] for an encoder")
        }
        guard tokenizer.vocabularySize <= encoder.config.vocabSize else {
            throw ModelError.badConfig(path: dir + "/config.json", key: "vocab_size",
                                       detail: "is \(encoder.config.vocabSize), but tokenizer.json has ids up to \(tokenizer.vocabularySize - 1)")
        }
        if let (path, key, declared) = settings.poolingDimension, declared != encoder.config.hiddenSize {
            throw ModelError.badConfig(path: path, key: key, detail: "is \(declared), but the encoder's hidden_size is \(encoder.config.hiddenSize)")
        }
        let positions = encoder.config.maxPositions
        if let length = settings.maxSequenceLength {
            guard length <= positions, length > tokenizer.specialTokensAdded else {
                throw ModelError.badConfig(path: dir + "/sentence_bert_config.json", key: "max_seq_length",
                                           detail: "is \(length): it must hold the \(tokenizer.specialTokensAdded) special tokens and fit max_position_embeddings (\(positions))")
            }
            maxLength = length
        } else {
            maxLength = min(positions, TokenizerConfig(directory: dir).modelMaxLength ?? positions)
        }
    }

    /// The ids the encoder sees for `text`; `truncated` when max_seq_length cut some.
    public func tokenize(_ text: String) -> (ids: [Int], truncated: Bool) {
        tokenizer.encode(settings.lowercase ? text.lowercased() : text, maxLength: maxLength)
    }

    /// Embeddings [texts, dimension], `batchSize` texts per encoder pass.
    public func embed(_ texts: [String], batchSize: Int = 32) -> Tensor {
        embed(tokens: texts.map { tokenize($0).ids }, batchSize: batchSize)
    }

    /// Embeddings [sequences, dimension] of token ids (as `tokenize` gives them), `batchSize` per pass.
    public func embed(tokens sequences: [[Int]], batchSize: Int) -> Tensor {
        precondition(batchSize > 0, "a batch holds at least one sequence")
        let out = Tensor(uninitialized: [sequences.count, dimension])
        for start in stride(from: 0, to: sequences.count, by: batchSize) {
            let pooled = embedBatch(Array(sequences[start..<min(sequences.count, start + batchSize)]))
            (out.pointer + start * dimension).update(from: pooled.pointer, count: pooled.count)
        }
        return out
    }

    /// Embeddings [sequences, dimension] of one encoder pass.
    func embedBatch(_ sequences: [[Int]]) -> Tensor {
        let hidden = encoder.hiddenStates(sequences)
        let h = encoder.config.hiddenSize, d = dimension
        let out = Tensor(uninitialized: [sequences.count, d])
        var row = 0
        for (s, sequence) in sequences.enumerated() {
            let tokens = hidden.pointer + row * h, n = sequence.count
            row += n
            for (m, mode) in settings.pooling.enumerated() {
                pool(tokens, count: n, width: h, mode: mode, into: out.pointer + s * d + m * h)
            }
            if settings.normalize { normalizeL2(out.pointer + s * d, count: d) }
        }
        return out
    }
}

/// One Pooling mode over a sequence's `count` token rows of `width` (all real tokens: the packed
/// batch has no padding). Sums run in token order in fp32, as torch's reduction over one sequence.
func pool(_ tokens: UnsafePointer<Float>, count: Int, width: Int, mode: PoolingMode, into out: UnsafeMutablePointer<Float>) {
    switch mode {
    case .cls:
        out.update(from: tokens, count: width)
    case .max:
        out.update(from: tokens, count: width)
        for t in 1..<count { for j in 0..<width { out[j] = Swift.max(out[j], tokens[t * width + j]) } }
    case .mean, .meanSqrtLength:
        out.update(repeating: 0, count: width)
        for t in 0..<count { for j in 0..<width { out[j] += tokens[t * width + j] } }
        let n = Float(count)
        let divisor = mode == .mean ? n : n.squareRoot()
        for j in 0..<width { out[j] /= divisor }
    }
}

/// v ← v / max(‖v‖₂, 1e-12), as torch.nn.functional.normalize.
public func normalizeL2(_ v: UnsafeMutablePointer<Float>, count: Int) {
    var squares: Float = 0
    for j in 0..<count { squares += v[j] * v[j] }
    let norm = Swift.max(squares.squareRoot(), 1e-12)
    for j in 0..<count { v[j] /= norm }
}
