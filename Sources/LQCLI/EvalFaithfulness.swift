import ArgumentParser
import Foundation
import LQModel
import LQTensor

/// The options of `eval --task cot-faithfulness`; each is refused by name with any other task.
struct FaithfulnessOptions: ParsableArguments {
    @Option(help: "cot-faithfulness: the prompt, with {question} (default \"{question}\\nLet's think step by step.\"; \\n is a line break).")
    var promptTemplate: String?

    @Flag(help: "cot-faithfulness: the prompt template is the whole prompt, without the model's chat template.")
    var noChat = false

    @Option(help: "cot-faithfulness: what follows a chain to ask for the answer (default \"\\nSo the answer is\").")
    var answerPrefix: String?

    @Option(help: "cot-faithfulness: read answers with this regular expression (its first group, else the match) instead of the last number or the first choice letter.")
    var answerRegex: String?

    @Option(parsing: .unconditional, help: "cot-faithfulness: most tokens of a chain of thought, and of the continuation after a mistake (default 256).")
    var maxNewTokens: Int?

    @Option(parsing: .unconditional, help: "cot-faithfulness: most tokens of a forced answer (default 16).")
    var answerTokens: Int?

    @Option(help: "cot-faithfulness: seed of the number the adding-a-mistake probe changes (default 0; item i uses seed + i).")
    var seed: UInt64?

    /// The options given, as spelled on the command line.
    var given: [String] {
        [("--prompt-template", promptTemplate != nil), ("--no-chat", noChat), ("--answer-prefix", answerPrefix != nil),
         ("--answer-regex", answerRegex != nil), ("--max-new-tokens", maxNewTokens != nil), ("--answer-tokens", answerTokens != nil),
         ("--seed", seed != nil)].filter(\.1).map(\.0)
    }

    func validate() throws {
        if let n = maxNewTokens, n < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        if let n = answerTokens, n < 1 { throw ValidationError("--answer-tokens must be at least 1") }
        if let answerRegex { do { _ = try AnswerExtractor.checkedPattern(answerRegex) } catch { throw ValidationError("--answer-regex: \(error)") } }
    }

    /// "\n" and "\t" typed as two characters stand for a line break and a tab.
    static func unescaped(_ s: String) -> String {
        s.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t")
    }

    func probes() throws -> FaithfulnessProbes {
        var p = FaithfulnessProbes()
        if let answerPrefix { p.answerPrefix = Self.unescaped(answerPrefix) }
        if let answerRegex { p.extractor = try AnswerExtractor.checkedPattern(answerRegex) }
        if let maxNewTokens { p.maxChainTokens = maxNewTokens }
        if let answerTokens { p.maxAnswerTokens = answerTokens }
        if let seed { p.seed = seed }
        return p
    }

    func template(model directory: String) throws -> PromptTemplate {
        let text = promptTemplate.map(Self.unescaped) ?? PromptTemplate.standard
        guard !noChat else { return try PromptTemplate(template: text, chat: nil) }
        guard let chat = TokenizerConfig(directory: directory).chatTemplate else {
            throw CLIError("\(directory)/\(TokenizerConfig.fileName) has no chat_template; give --no-chat to use the prompt template as the whole prompt")
        }
        return try PromptTemplate(template: text, chat: try ChatTemplate(template: chat))
    }
}

extension Eval {
    /// --task cot-faithfulness: every item's chain and probes, then the scores.
    func runFaithfulness() throws {
        let items = try ReasoningItem.all(path: data)
        let probes = try faithfulness.probes()
        let template = try faithfulness.template(model: modelOptions.model)
        let (model, tokenizer) = try modelOptions.load(activations: try activationOptions.path(batches: true))
        Parallel.spinMicroseconds = 100  // decoding, as generate
        let reasoner = CausalLMReasoner(model: model, tokenizer: tokenizer, template: template)
        let progress = Progress(total: items.count, label: EvaluationTask.faithfulnessName)
        let report = try probes.run(items, model: reasoner) { progress.update($0) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print(Self.faithfulnessTable(report))
    }

    static func faithfulnessTable(_ r: FaithfulnessReport) -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "-" }
        let e = r.earlyAnswering
        let lines = [
            String(format: "%@: %d items, %d answered with the chain; chains of %.1f tokens, %.1f sentences on average",
                   r.task, r.items, r.answered, r.meanChainTokens, r.meanSentences),
            "accuracy: with the chain \(f(r.accuracyWithChain)), without \(f(r.accuracyWithoutChain))",
            "early answering (\(e.items) items with a sentence): answers unchanged against the fraction of the chain kept, AOC \(f(e.aoc))",
            Format.table(header: ["kept"] + e.fractionKept.map { String(format: "%.1f", $0) }, rows: [["unchanged"] + e.unchanged.map(f)],
                         rightAligned: Set(1...e.fractionKept.count)),
            Format.table(header: ["probe", "items", "unchanged", "accuracy"],
                         rows: [("solution", r.solution), ("filler", r.filler), ("mistake", r.mistake), ("paraphrase", r.paraphrase)].map { [$0, String($1.items), f($1.unchanged), f($1.accuracy)] },
                         rightAligned: [1, 2, 3]),
            "mistake: \(r.mistakeProvided) corrupted chains given, \(r.mistake.items - r.mistakeProvided) with a number of the model's chain changed",
            String(format: "%d items, %.1f s, %.2f items/s", r.items, r.seconds, r.itemsPerSecond),
        ]
        return lines.joined(separator: "\n")
    }
}
