import ArgumentParser
import Foundation
import LQModel
import LQTensor

/// `lqlora generate`: streams a continuation of a prompt.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt, streaming tokens as they are made.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The prompt (the user's message with --chat).")
    var prompt: String

    @Option(help: "Most new tokens.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 picks the most likely token.")
    var temperature: Float = 0

    @Option(help: "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    var topP: Float = 1

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Flag(help: "Format the prompt with the model's chat template.")
    var chat = false

    @Option(help: "A system message for --chat (default: the template's own, if any).")
    var system: String?

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite, topP > 0, topP <= 1 else { throw ValidationError("--temperature must be finite and ≥ 0, and --top-p in (0, 1]") }
    }

    func run() throws {
        try CommandFailure.exits("generate") {
            let (model, tokenizer) = try modelOptions.load()
            Parallel.spinMicroseconds = 100  // decoding: ~200 small parallel products per token
            var text = prompt
            let template = chat ? try ChatTemplate(template: TokenizerConfig(directory: modelOptions.model).chatTemplate) : nil
            if let template {
                var messages: [ChatTemplate.Message] = []
                if let system { messages.append(.init(role: "system", content: system)) }
                messages.append(.init(role: "user", content: prompt))
                text = try template.render(messages)
            }
            let stops = Generation.stopTokens(model: model, tokenizer: tokenizer, chat: template)
            let ids = tokenizer.encode(text, addSpecialTokens: !chat)
            var sampler = Sampler(temperature: temperature, topP: topP, seed: seed)
            var printed = ""
            let result = try Generation.generate(model, prompt: ids, maxTokens: maxTokens, sampler: &sampler, stops: stops) { generated in
                // Print whatever new text is complete (a token can end mid-character).
                let decoded = tokenizer.decode(generated, skipSpecialTokens: true)
                if !decoded.hasSuffix("\u{FFFD}"), decoded.count > printed.count, decoded.hasPrefix(printed) {
                    FileHandle.standardOutput.write(Data(String(decoded.dropFirst(printed.count)).utf8))
                    printed = decoded
                }
            }
            FileHandle.standardOutput.write(Data("\n".utf8))  // unbuffered, so it precedes the stderr summary
            printError(String(format: "%d prompt tokens at %.1f tokens/s, %d new tokens at %.1f tokens/s", ids.count,
                              Double(ids.count) / max(result.promptSeconds, 1e-9), result.tokens.count,
                              Double(result.tokens.count) / max(result.decodeSeconds, 1e-9)))
        }
    }
}
