import ArgumentParser
import Foundation
import LQModel
import LQTensor

/// How new tokens are chosen: `generate` and `rag ask`.
struct SamplingOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Most new tokens.")
    var maxTokens = 128

    @Option(parsing: .unconditional, help: "Sampling temperature; 0 picks the most likely token.")
    var temperature: Float = 0

    @Option(parsing: .unconditional, help: "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    var topP: Float = 1

    @Option(parsing: .unconditional, help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Flag(help: "Keep generating past end-of-sequence tokens, to --max-tokens (as llama.cpp's --ignore-eos: for benchmarks).")
    var ignoreEos = false

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite, topP > 0, topP <= 1 else { throw ValidationError("--temperature must be finite and ≥ 0, and --top-p in (0, 1]") }
    }

    /// Generates after `prompt` until a stop token (the model's, and `chat`'s end of turn), writing
    /// the text to stdout as it completes; returns the text.
    func stream(_ model: LlamaModel, tokenizer: any Tokenizer, prompt ids: [Int], chat: ChatTemplate?) throws -> (text: String, result: Generation.Result) {
        Parallel.spinMicroseconds = 100  // decoding: ~200 small parallel products per token
        var sampler = Sampler(temperature: temperature, topP: topP, seed: seed)
        var printed = ""
        let stops = ignoreEos ? [] : Generation.stopTokens(model: model, tokenizer: tokenizer, chat: chat)
        let result = try Generation.generate(model, prompt: ids, maxTokens: maxTokens, sampler: &sampler, stops: stops) { generated in
            // Print whatever new text is complete (a token can end mid-character).
            let decoded = tokenizer.decode(generated, skipSpecialTokens: true)
            if !decoded.hasSuffix("\u{FFFD}"), decoded.count > printed.count, decoded.hasPrefix(printed) {
                FileHandle.standardOutput.write(Data(String(decoded.dropFirst(printed.count)).utf8))
                printed = decoded
            }
        }
        FileHandle.standardOutput.write(Data("\n".utf8))  // unbuffered, so it precedes the stderr summary
        return (tokenizer.decode(result.tokens, skipSpecialTokens: true), result)
    }

    /// The speeds line on stderr.
    static func summarize(promptTokens: Int, _ result: Generation.Result) {
        printError(String(format: "%d prompt tokens at %.1f tokens/s, %d new tokens at %.1f tokens/s", promptTokens,
                          Double(promptTokens) / max(result.promptSeconds, 1e-9), result.tokens.count,
                          Double(result.tokens.count) / max(result.decodeSeconds, 1e-9)))
    }
}

/// A chat rendered by a model's template, as the prompt's tokens.
struct ChatPrompt {
    let template: ChatTemplate
    let ids: [Int]

    init(messages: [ChatTemplate.Message], modelDirectory: String, tokenizer: any Tokenizer) throws {
        template = try ChatTemplate(template: TokenizerConfig(directory: modelDirectory).chatTemplate)
        ids = try tokenizer.encode(try template.render(messages), addSpecialTokens: false)
    }
}

/// `lqlora generate`: streams a continuation of a prompt.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt, streaming tokens as they are made.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The prompt (the user's message with --chat).")
    var prompt: String

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var activationOptions: ActivationOptions

    @Flag(help: "Format the prompt with the model's chat template.")
    var chat = false

    @Option(help: "A system message for --chat (default: the template's own, if any).")
    var system: String?

    func run() throws {
        try CommandFailure.exits("generate") {
            let (model, tokenizer) = try modelOptions.load(projections: .asStored, activations: try activationOptions.path(batches: false))
            var ids = try tokenizer.encode(prompt, addSpecialTokens: true)
            var template: ChatTemplate?
            if chat {
                let messages = (system.map { [ChatTemplate.Message(role: "system", content: $0)] } ?? []) + [.init(role: "user", content: prompt)]
                let rendered = try ChatPrompt(messages: messages, modelDirectory: modelOptions.model, tokenizer: tokenizer)
                (ids, template) = (rendered.ids, rendered.template)
            }
            let (_, result) = try sampling.stream(model, tokenizer: tokenizer, prompt: ids, chat: template)
            SamplingOptions.summarize(promptTokens: ids.count, result)
        }
    }
}
