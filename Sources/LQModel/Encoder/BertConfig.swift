import Foundation

/// `config.json` of a BERT-family encoder (BertModel: all-MiniLM-L6-v2 and its relatives): the
/// fields the forward pass needs, validated with errors that name the file and key. Settings it
/// cannot run (another activation, relative positions, a decoder) are refused by name.
public struct BertConfig: Sendable, Equatable {
    public static let supportedTypes = ["bert"]

    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var vocabSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float

    public var headDim: Int { hiddenSize / headCount }

    public init(json: [String: Any], path: String) throws {
        let config = ConfigReader(json: json, path: path)
        let modelType = try config.string("model_type")
        guard Self.supportedTypes.contains(modelType) else {
            throw ModelError.unsupported(path: path, what: "model_type '\(modelType)' for an encoder (supported: \(Self.supportedTypes.joined(separator: ", ")))")
        }
        hiddenSize = try config.int("hidden_size")
        intermediateSize = try config.int("intermediate_size")
        layerCount = try config.int("num_hidden_layers")
        headCount = try config.int("num_attention_heads")
        vocabSize = try config.int("vocab_size")
        maxPositions = try config.int("max_position_embeddings")
        // transformers' BertConfig defaults for the two keys a checkpoint may leave out.
        typeVocabSize = try config.int("type_vocab_size", default: 2)
        layerNormEps = try config.float("layer_norm_eps", default: 1e-12)
        guard hiddenSize % headCount == 0 else { throw config.bad("num_attention_heads", "must divide hidden_size (\(hiddenSize))") }
        let act = try config.string("hidden_act", default: "gelu")
        guard act == "gelu" else { throw ModelError.unsupported(path: path, what: "hidden_act '\(act)' (gelu, with erf, is)") }
        let positions = try config.string("position_embedding_type", default: "absolute")
        guard positions == "absolute" else { throw ModelError.unsupported(path: path, what: "position_embedding_type '\(positions)' (absolute is)") }
        if try config.bool("is_decoder", default: false) { throw ModelError.unsupported(path: path, what: "is_decoder (a BERT decoder)") }
        if try config.bool("add_cross_attention", default: false) { throw ModelError.unsupported(path: path, what: "add_cross_attention") }
    }

    public init(directory: String) throws {
        let config = try ConfigReader(path: directory + "/config.json")
        try self.init(json: config.json, path: config.path)
    }
}
