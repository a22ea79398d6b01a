import Foundation

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case badConfig(path: String, key: String, detail: String)
    case unsupported(path: String, what: String)
    case missingWeight(path: String, tensor: String)
    case badShape(path: String, tensor: String, expected: [Int], actual: [Int])

    public var description: String {
        switch self {
        case let .badConfig(path, key, detail): return "\(path): config key '\(key)' \(detail)"
        case let .unsupported(path, what): return "\(path): \(what) is not supported"
        case let .missingWeight(path, tensor): return "\(path): missing weight '\(tensor)'"
        case let .badShape(path, tensor, expected, actual): return "\(path): weight '\(tensor)' has shape \(actual), expected \(expected)"
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
        func bad(_ key: String, _ detail: String) -> ModelError { .badConfig(path: path, key: key, detail: detail) }
        func int(_ key: String, default d: Int? = nil) throws -> Int {
            guard let v = json[key] else {
                if let d { return d }
                throw bad(key, "is missing")
            }
            guard let n = v as? NSNumber, !isJSONBool(n), Double(n.intValue) == n.doubleValue, n.intValue > 0 else {
                throw bad(key, "must be a positive integer, not \(v)")
            }
            return n.intValue
        }
        func float(_ key: String, default d: Float) throws -> Float {
            guard let v = json[key] else { return d }
            guard let n = v as? NSNumber, !isJSONBool(n) else { throw bad(key, "must be a number, not \(v)") }
            return n.floatValue
        }
        modelType = json["model_type"] as? String ?? "llama"
        guard Self.supportedTypes.contains(modelType) else {
            throw ModelError.unsupported(path: path, what: "model_type '\(modelType)' (supported: \(Self.supportedTypes.joined(separator: ", ")))")
        }
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        kvHeadCount = try int("num_key_value_heads", default: headCount)
        headDim = (json["head_dim"] is NSNull || json["head_dim"] == nil) ? hiddenSize / headCount : try int("head_dim")
        vocabSize = try int("vocab_size")
        maxPositions = try int("max_position_embeddings", default: 2048)
        rmsNormEps = try float("rms_norm_eps", default: 1e-6)
        // transformers 5 nests rope settings in `rope_parameters`; earlier versions keep
        // `rope_theta` and `rope_scaling` at the top level.
        let ropeParameters = json["rope_parameters"] as? [String: Any]
        let topTheta = try float("rope_theta", default: 10000)
        ropeTheta = (ropeParameters?["rope_theta"] as? NSNumber)?.floatValue ?? topTheta
        tieWordEmbeddings = json["tie_word_embeddings"] as? Bool ?? false
        qkvBias = modelType == "qwen2" ? true : (json["attention_bias"] as? Bool ?? false)
        slidingWindow = modelType == "mistral" ? (json["sliding_window"] as? NSNumber)?.intValue : nil
        bosTokenID = (json["bos_token_id"] as? NSNumber)?.intValue
        if let one = json["eos_token_id"] as? NSNumber { eosTokenIDs = [one.intValue] }
        else if let many = json["eos_token_id"] as? [NSNumber] { eosTokenIDs = many.map(\.intValue) }
        guard headCount % kvHeadCount == 0 else { throw bad("num_key_value_heads", "must divide num_attention_heads (\(headCount))") }
        guard headDim % 2 == 0 else { throw bad("head_dim", "must be even for rotary embeddings") }
        if let act = json["hidden_act"] as? String, act != "silu" { throw ModelError.unsupported(path: path, what: "hidden_act '\(act)'") }
        if json["mlp_bias"] as? Bool == true { throw ModelError.unsupported(path: path, what: "mlp_bias") }

        ropeScaling = nil
        if let s = (json["rope_scaling"] as? [String: Any]) ?? ropeParameters {
            let type = (s["rope_type"] ?? s["type"]) as? String ?? "?"
            let factor = (s["factor"] as? NSNumber)?.floatValue ?? 1
            switch type {
            case "default": ropeScaling = nil
            case "linear": ropeScaling = .linear(factor: factor)
            case "llama3":
                guard let low = (s["low_freq_factor"] as? NSNumber)?.floatValue, let high = (s["high_freq_factor"] as? NSNumber)?.floatValue,
                      let original = (s["original_max_position_embeddings"] as? NSNumber)?.floatValue
                else { throw bad("rope_scaling", "of type llama3 needs low_freq_factor, high_freq_factor, original_max_position_embeddings") }
                ropeScaling = .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original)
            default:
                throw ModelError.unsupported(path: path, what: "rope_scaling type '\(type)' (none, linear and llama3 are)")
            }
        }
    }

    public init(directory: String) throws {
        let path = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw ModelError.badConfig(path: path, key: "(file)", detail: "is missing or not a JSON object") }
        try self.init(json: json, path: path)
        if let t = FileManager.default.contents(atPath: directory + "/tokenizer_config.json"),
           let tc = try? JSONSerialization.jsonObject(with: t) as? [String: Any] {
            addsBOS = tc["add_bos_token"] as? Bool ?? false
        }
    }
}

/// JSONSerialization's booleans are NSNumbers of type "c"; `is Bool` also matches the numbers 0 and 1.
func isJSONBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
