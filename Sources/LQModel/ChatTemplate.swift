import Foundation

/// Chat formatting for the common template families, recognised from the model's Jinja
/// `chat_template` (no Jinja engine: each family's layout is written out here).
public enum ChatTemplate: Equatable, Sendable {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (Qwen, SmolLM, ...), with the system message the
    /// template inserts when none is given.
    case chatML(defaultSystem: String?)
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` after `<|begin_of_text|>`.
    case llama3
    /// `[INST] <<SYS>>...<</SYS>> user [/INST] assistant`.
    case llama2

    public struct Message: Equatable, Sendable {
        public let role: String
        public let content: String
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    public init(template: String?) throws {
        guard let t = template else {
            throw ModelError.unsupported(path: "tokenizer_config.json", what: "chat formatting without a chat_template")
        }
        if t.contains("<|im_start|>") {
            // A default system turn written literally into the template, as SmolLM2's is.
            var system: String?
            if let r = t.range(of: "'<|im_start|>system\n"), let end = t.range(of: "<|im_end|>", range: r.upperBound..<t.endIndex),
               t[..<r.lowerBound].contains("!= 'system'") || t[..<r.lowerBound].contains("!= \"system\"") {
                system = String(t[r.upperBound..<end.lowerBound])
            }
            self = .chatML(defaultSystem: system)
        } else if t.contains("<|start_header_id|>") {
            self = .llama3
        } else if t.contains("[INST]") {
            self = .llama2
        } else {
            throw ModelError.unsupported(path: "tokenizer_config.json", what: "this chat_template (known families: ChatML, Llama 3, Llama 2)")
        }
    }

    /// The prompt text for `messages`, ending with the assistant's turn opened.
    public func render(_ messages: [Message], addGenerationPrompt: Bool = true) throws -> String {
        switch self {
        case let .chatML(defaultSystem):
            var out = ""
            if let defaultSystem, messages.first?.role != "system" {
                out += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
            }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
            return out
        case .llama3:
            var out = "<|begin_of_text|>"
            for m in messages { out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(m.content.trimmingCharacters(in: .whitespacesAndNewlines))<|eot_id|>" }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
            return out
        case .llama2:
            // Meta's template: an optional system message first, then user and assistant turns
            // alternating; the system block joins the first user turn and the pair is stripped as one.
            var turns = messages[...]
            var system: String?
            if turns.first?.role == "system" { system = turns.removeFirst().content }
            var out = ""
            for (i, m) in turns.enumerated() {
                guard m.role == (i % 2 == 0 ? "user" : "assistant") else {
                    throw ModelError.unsupported(path: "chat messages", what: "a '\(m.role)' message at position \(i + (system == nil ? 1 : 2)) (Llama 2 chats alternate user and assistant after an optional first system message)")
                }
                if m.role == "user" {
                    let content = (i == 0 ? system.map { "<<SYS>>\n\($0)\n<</SYS>>\n\n" } ?? "" : "") + m.content
                    out += "<s>[INST] \(content.trimmingCharacters(in: .whitespacesAndNewlines)) [/INST]"
                } else {
                    out += " \(m.content.trimmingCharacters(in: .whitespacesAndNewlines)) </s>"
                }
            }
            return out
        }
    }

    /// Tokens that end the assistant's turn.
    public var stopTokens: [String] {
        switch self {
        case .chatML: return ["<|im_end|>"]
        case .llama3: return ["<|eot_id|>"]
        case .llama2: return ["</s>"]
        }
    }
}
