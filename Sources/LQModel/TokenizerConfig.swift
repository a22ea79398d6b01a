import Foundation

/// The keys lqlora reads from a model directory's tokenizer_config.json. Every reader is lenient:
/// a missing or unparsable file reads as empty (the model then has no chat template and no BOS
/// rule), since transformers' own checkpoints often ship without one.
public struct TokenizerConfig: Sendable, Equatable {
    public static let fileName = "tokenizer_config.json"

    /// `chat_template`: the Jinja template of the model's chat format.
    public var chatTemplate: String?
    /// `add_bos_token`: whether the tokenizer puts BOS first.
    public var addBOSToken: Bool?
    /// `model_max_length`: the most tokens the model takes (nil when absent or beyond Int).
    public var modelMaxLength: Int?

    public init(chatTemplate: String? = nil, addBOSToken: Bool? = nil, modelMaxLength: Int? = nil) {
        self.chatTemplate = chatTemplate
        self.addBOSToken = addBOSToken
        self.modelMaxLength = modelMaxLength
    }

    /// The file in `directory`, or an empty configuration if it is absent or not a JSON object.
    public init(directory: String) {
        guard let data = FileManager.default.contents(atPath: directory + "/" + Self.fileName),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { self.init(); return }
        // transformers writes 1e30 for "no limit".
        let length = (json["model_max_length"] as? NSNumber).map(\.doubleValue).flatMap { $0 >= 1 && $0 < 1e15 ? Int($0) : nil }
        self.init(chatTemplate: json["chat_template"] as? String, addBOSToken: json["add_bos_token"] as? Bool, modelMaxLength: length)
    }
}
