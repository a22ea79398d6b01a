import Foundation

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case badConfig(path: String, key: String, detail: String)
    case unsupported(path: String, what: String)
    case missingWeight(path: String, tensor: String)
    case badShape(path: String, tensor: String, expected: [Int], actual: [Int])
    /// A record of a data file (JSON lines) at a 1-based line.
    case badRecord(path: String, line: Int, detail: String)
    /// A result that came out NaN or infinite, and where that comes from.
    case notFinite(what: String, cause: String)

    public var description: String {
        switch self {
        case let .badConfig(path, key, detail): return "\(path): config key '\(key)' \(detail)"
        case let .unsupported(path, what): return "\(path): \(what) is not supported"
        case let .missingWeight(path, tensor): return "\(path): missing weight '\(tensor)'"
        case let .badShape(path, tensor, expected, actual): return "\(path): weight '\(tensor)' has shape \(actual), expected \(expected)"
        case let .badRecord(path, line, detail): return "\(path):\(line): \(detail)"
        case let .notFinite(what, cause): return "\(what) is not finite: \(cause)"
        }
    }
}

/// RoPE frequency scaling (config.json `rope_scaling`).
public enum RopeScaling: Equatable, Sendable {
    case linear(factor: Float)
    case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Float)
}

/// `config.json` of LlamaForCausalLM and its relatives (Mistral, Qwen2, SmolLM): the fields the
/// forward pass needs, validated with errors that name the key.
public struct LlamaConfig: Sendable, Equatable {
    public static let supportedTypes = ["llama", "mistral", "qwen2"]

    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var vocabSize: Int
    public var maxPositions: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool
    /// Biases on q/k/v (Qwen2 always; Llama's `attention_bias`).
    public var qkvBias: Bool
    /// Mistral's sliding attention window, if any.
    public var slidingWindow: Int?
    public var bosTokenID: Int?
    /// config.json's `eos_token_id` (a number or a list).
    public var eosTokenIDs: [Int] = []
    /// Whether the tokenizer puts BOS first (tokenizer_config.json `add_bos_token`), for llama.cpp's protocol.
    public var addsBOS = false

    public init(json: [String: Any], path: String) throws {
        let config = ConfigReader(json: json, path: path)
        modelType = json["model_type"] as? String ?? "llama"
        guard Self.supportedTypes.contains(modelType) else {
            throw ModelError.unsupported(path: path, what: "model_type '\(modelType)' (supported: \(Self.supportedTypes.joined(separator: ", ")))")
        }
        hiddenSize = try config.int("hidden_size")
        intermediateSize = try config.int("intermediate_size")
        layerCount = try config.int("num_hidden_layers")
        headCount = try config.int("num_attention_heads")
        kvHeadCount = try config.int("num_key_value_heads", default: headCount)
        headDim = (json["head_dim"] is NSNull || json["head_dim"] == nil) ? hiddenSize / headCount : try config.int("head_dim")
        vocabSize = try config.int("vocab_size")
        maxPositions = try config.int("max_position_embeddings", default: 2048)
        rmsNormEps = try config.float("rms_norm_eps", default: 1e-6)
        // transformers 5 nests rope settings in `rope_parameters`; earlier versions keep
        // `rope_theta` and `rope_scaling` at the top level.
        let ropeParameters = json["rope_parameters"] as? [String: Any]
        let topTheta = try config.float("rope_theta", default: 10000)
        ropeTheta = (ropeParameters?["rope_theta"] as? NSNumber)?.floatValue ?? topTheta
        tieWordEmbeddings = json["tie_word_embeddings"] as? Bool ?? false
        qkvBias = modelType == "qwen2" ? true : (json["attention_bias"] as? Bool ?? false)
        slidingWindow = modelType == "mistral" ? (json["sliding_window"] as? NSNumber)?.intValue : nil
        bosTokenID = (json["bos_token_id"] as? NSNumber)?.intValue
        if let one = json["eos_token_id"] as? NSNumber { eosTokenIDs = [one.intValue] }
        else if let many = json["eos_token_id"] as? [NSNumber] { eosTokenIDs = many.map(\.intValue) }
        // A zero or negative epsilon, or a base of 0, makes every result NaN: refused here by name.
        guard rmsNormEps.isFinite, rmsNormEps > 0 else { throw config.bad("rms_norm_eps", "must be a positive finite number, not \(rmsNormEps)") }
        guard ropeTheta.isFinite, ropeTheta > 0 else {
            throw config.bad(ropeParameters?["rope_theta"] != nil ? "rope_parameters.rope_theta" : "rope_theta", "must be a positive finite number, not \(ropeTheta)")
        }
        let ids = (bosTokenID.map { [("bos_token_id", $0)] } ?? []) + eosTokenIDs.map { ("eos_token_id", $0) }
        for (key, id) in ids where id < 0 || id >= vocabSize {
            throw config.bad(key, "is \(id), outside the vocabulary of \(vocabSize) (vocab_size)")
        }
        guard headCount % kvHeadCount == 0 else { throw config.bad("num_key_value_heads", "must divide num_attention_heads (\(headCount))") }
        guard headDim % 2 == 0 else { throw config.bad("head_dim", "must be even for rotary embeddings") }
        if let act = json["hidden_act"] as? String, act != "silu" { throw ModelError.unsupported(path: path, what: "hidden_act '\(act)'") }
        if json["mlp_bias"] as? Bool == true { throw ModelError.unsupported(path: path, what: "mlp_bias") }

        ropeScaling = nil
        if let s = (json["rope_scaling"] as? [String: Any]) ?? ropeParameters {
            let type = (s["rope_type"] ?? s["type"]) as? String ?? "?"
            let factor = (s["factor"] as? NSNumber)?.floatValue ?? 1
            guard factor.isFinite, factor > 0 else { throw config.bad("rope_scaling", "needs a positive finite factor, not \(factor)") }
            switch type {
            case "default": ropeScaling = nil
            case "linear": ropeScaling = .linear(factor: factor)
            case "llama3":
                guard let low = (s["low_freq_factor"] as? NSNumber)?.floatValue, let high = (s["high_freq_factor"] as? NSNumber)?.floatValue,
                      let original = (s["original_max_position_embeddings"] as? NSNumber)?.floatValue
                else { throw config.bad("rope_scaling", "of type llama3 needs low_freq_factor, high_freq_factor, original_max_position_embeddings") }
                ropeScaling = .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original)
            default:
                throw ModelError.unsupported(path: path, what: "rope_scaling type '\(type)' (none, linear and llama3 are)")
            }
        }
    }

    public init(directory: String) throws {
        let config = try ConfigReader(path: directory + "/config.json")
        try self.init(json: config.json, path: config.path)
        if let t = FileManager.default.contents(atPath: directory + "/tokenizer_config.json"),
           let tc = try? JSONSerialization.jsonObject(with: t) as? [String: Any] {
            addsBOS = tc["add_bos_token"] as? Bool ?? false
        }
    }
}
