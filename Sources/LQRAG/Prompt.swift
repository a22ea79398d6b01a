import LQModel

/// The chat a model answers from: the judged passages as numbered references, then the question
/// (the paper's chatbot puts the question first; a 135M model answers better after the references).
public enum RAGPrompt {
    public static func messages(question: String, passages: [StoredPassage], system: String? = nil) -> [ChatTemplate.Message] {
        let references = passages.enumerated().map { "[\($0.offset + 1)] \($0.element.text)" }.joined(separator: "\n")
        let user = "References:\n\(references)\n\nUsing the references above, answer the question: \(question)"
        return (system.map { [ChatTemplate.Message(role: "system", content: $0)] } ?? []) + [ChatTemplate.Message(role: "user", content: user)]
    }
}
