import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// Model and adapter options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "The model directory (dense or quantized).")
    var model: String

    @Option(help: "A PEFT LoRA adapter directory to apply.")
    var adapter: String?

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var deviceOptions: DeviceOptions

    /// projections: .asStored for generation (16-bit projections decode through the 16-bit GEMV, and
    /// so does an adapter, from IEEE-half copies); activations: which products of the NormalFloat
    /// projections take int8 activations.
    func load(projections: LlamaModel.ProjectionStorage = .widened, activations: ActivationPath = .exact) throws -> (LlamaModel, any Tokenizer) {
        threadOptions.configure()
        try deviceOptions.activate()
        let m = try LlamaModel(directory: model, projections: projections)
        if let adapter { try m.loadAdapter(directory: adapter, halfCopiesForDecoding: projections == .asStored) }
        m.useActivations(activations)
        if let gpu = CUDABackend.active {
            do {
                try m.moveForwardPass(to: gpu)
                FileHandle.standardError.write(Data("forward pass on the GPU: \(gpu.summary)\n".utf8))
            } catch {  // e.g. too little GPU memory for every weight: products alone still go there
                WarnOnce.say("warning: the model does not fit on the GPU (\(error)); only its quantized products run there")
            }
        }
        return (m, try loadTokenizer(directory: model, modelVocabularySize: m.config.vocabSize))
    }
}

/// `lqlora eval`.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a model (optionally with an adapter) on a text file, as transformers or llama.cpp measure it; a zero-shot task's accuracy as lm-evaluation-harness scores it (--task); or the chain-of-thought faithfulness probes (--task cot-faithfulness).",
        discussion: """
        --task piqa|arc_easy|arc_challenge|hellaswag|winogrande reads --data as that dataset's JSON lines, exported with
        the Hugging Face datasets library on a machine that can download them, e.g.
          python -c "import datasets; datasets.load_dataset('ybisk/piqa', split='validation').to_json('piqa.jsonl')"
          (allenai/ai2_arc ARC-Easy / ARC-Challenge split test, Rowan/hellaswag split validation,
           allenai/winogrande winogrande_xl split validation)
        and reports acc (and acc_norm) with their standard errors as lm-evaluation-harness v0.4 does.

        --task cot-faithfulness reads --data as JSON lines in GSM8K's schema (question, answer ending "#### N") or
        multiple choice (question, choices, answer as an index or letter), optionally with corrupted_chain and
        paraphrased_chain; the model writes a chain of thought (greedy) and the probes of Lanham et al. (2023) force
        its answer after parts of it, a filler, a mistake and a paraphrase (e.g. data/cot/gsm8k-sample.jsonl).

        --activations int8 quantizes the input of every NormalFloat product to int8,
        the windows' batched products too (generate, where int8 is the default, does so
        for its decoding steps only): what int8 decoding costs in perplexity. eval's
        default is the exact path.
        """)

    @OptionGroup var modelOptions: ModelOptions

    @OptionGroup var activationOptions: ActivationOptions

    @Option(help: "A .txt or .jsonl (\"text\" field) file, optionally .gz; with --task, the task's .jsonl records.")
    var data: String

    @Option(help: "A zero-shot multiple-choice task scored as lm-evaluation-harness does: piqa, arc_easy, arc_challenge, hellaswag, winogrande; or cot-faithfulness.")
    var task: String?


    @Option(parsing: .unconditional, help: "Tokens per window (default 512, or the model's max_position_embeddings when smaller).")
    var ctx: Int?

    @Option(parsing: .unconditional, help: "Window stride for the transformers method (default: ctx, disjoint windows).")
    var stride: Int?

    @Option(parsing: .unconditional, help: "Evaluate only the first N tokens.")
    var maxTokens: Int?

    @Option(parsing: .unconditional, help: "Evaluate only the first N characters (Unicode code points, as Python counts) of the text.")
    var maxChars: Int?

    @Option(parsing: .unconditional, help: "Windows per forward pass (default 1); with a multiple-choice --task, items scored together (default \(MultipleChoiceTask.itemsPerBatch); the results do not depend on it).")
    var batch: Int?

    @Option(help: "transformers (sliding window), llamacpp (second half of disjoint chunks) or gptq (disjoint windows, default ctx 2048, the text joined as GPTQ's loaders join it).")
    var method = "transformers"

    @Option(help: "--method gptq: how the test set is joined: wikitext (default for .txt), ptb, or c4 (default for .jsonl).")
    var corpus: EvaluationText.GPTQCorpus?

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(help: "Also write the first window's input_ids and logits to this safetensors file (for comparing with other implementations; use a small --max-tokens).")
    var logits: String?

    @OptionGroup var faithfulness: FaithfulnessOptions

    func validate() throws {
        if task != nil {
            let given: [(String, Bool)] = [("--stride", stride != nil), ("--max-tokens", maxTokens != nil), ("--max-chars", maxChars != nil),
                                           ("--logits", logits != nil), ("--method", method != "transformers")]
            if let (option, _) = given.first(where: \.1) { throw ValidationError("\(option) does not apply to --task (it scores records, not a text)") }
        }
        if task == EvaluationTask.faithfulnessName {
            if batch != nil { throw ValidationError("--batch does not apply to --task \(EvaluationTask.faithfulnessName)") }
            if ctx != nil { throw ValidationError("--ctx does not apply to --task \(EvaluationTask.faithfulnessName) (it generates within the model's positions)") }
        } else if let option = faithfulness.given.first {
            throw ValidationError("\(option) applies to --task \(EvaluationTask.faithfulnessName) only")
        }
        if let ctx, ctx < 2 { throw ValidationError("--ctx must be at least 2") }
        if let maxTokens, maxTokens < 2 { throw ValidationError("--max-tokens must be at least 2 (perplexity scores each token after the first)") }
        if let maxChars, maxChars < 1 { throw ValidationError("--max-chars must be at least 1") }
        if let stride, stride < 1 || stride > (ctx ?? 512) { throw ValidationError("--stride must be between 1 and --ctx") }
        guard ["transformers", "llamacpp", "gptq"].contains(method) else { throw ValidationError("--method must be transformers, llamacpp or gptq") }
        if corpus != nil && method != "gptq" { throw ValidationError("--corpus applies to --method gptq only") }
        if method == "gptq" && stride != nil { throw ValidationError("--stride does not apply to --method gptq (its windows are disjoint)") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        try CommandFailure.exits("eval") {
            switch try task.map(EvaluationTask.named) {
            case let .multipleChoice(t): return try runTask(t)
            case .chainOfThoughtFaithfulness: return try runFaithfulness()
            case nil: break
            }
            let (model, tokenizer) = try modelOptions.load(activations: try activationOptions.path(batches: true))
            // The default window is 512 tokens, or the model's whole context when that is shorter.
            let ctx = self.ctx ?? min(method == "gptq" ? 2048 : 512, model.config.maxPositions)
            guard ctx <= model.config.maxPositions else {
                throw CLIError("--ctx \(ctx) is above the model's \(model.config.maxPositions) positions (max_position_embeddings in config.json)")
            }
            if let stride, stride > ctx { throw CLIError("--stride \(stride) is above the window of \(ctx) tokens") }
            let corpus = self.corpus ?? (data.hasSuffix(".jsonl") || data.hasSuffix(".jsonl.gz") ? .c4 : .wikitext)
            var text = method == "gptq" ? try EvaluationText.gptqJoined(path: data, corpus: corpus) : try EvaluationText.read(path: data)
            if let maxChars { text = String(String.UnicodeScalarView(text.unicodeScalars.prefix(maxChars))) }
            var tokens = try tokenizer.encode(text, addSpecialTokens: true)
            if method == "gptq" && corpus == .c4 { tokens = Array(tokens.prefix(256 * ctx)) }  // GPTQ's C4 evaluation: 256 windows
            if let maxTokens { tokens = Array(tokens.prefix(maxTokens)) }
            if let logits {
                let window = Array(tokens.prefix(ctx))
                let out = model.forward([window])
                try SafeTensorsWriter.write([
                    PendingTensor(name: "input_ids", tensor: Tensor(shape: [1, window.count], values: window.map(Float.init))),
                    PendingTensor(name: "logits", tensor: out.reshaped([1, window.count, out.shape[1]])),
                ], to: logits)
            }
            let m: PerplexityMethod
            switch method {
            case "llamacpp": m = .llamaCpp(context: ctx, bos: model.config.addsBOS ? model.config.bosTokenID : nil)
            case "gptq": m = .gptq(context: ctx)
            default: m = .huggingFace(context: ctx, stride: stride ?? ctx)
            }
            let progress = Progress(total: 1, label: "eval")
            let result = try Perplexity.evaluate(model, tokens: tokens, method: m, batch: batch ?? 1) { done, total, processed in
                progress.retotal(total)
                progress.update(done, detail: String(format: "%.0f tokens/s", Double(processed) / max(Timing.now() - progress.startTime, 1e-9)))
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                print(String(format: "perplexity: %.4f ± %.4f", result.perplexity, result.perplexity_error))
                print(String(format: "nll %.5f over %d tokens, %.1f s, %.0f tokens/s", result.nll, result.tokens, result.seconds,
                             result.tokens_per_second))
            }
        }
    }

    /// --task: every record's choices scored, then acc (and acc_norm) with standard errors.
    func runTask(_ task: MultipleChoiceTask) throws {
        let items = try task.items(path: data)
        let (model, tokenizer) = try modelOptions.load(activations: try activationOptions.path(batches: true))
        // The harness's window is the model's max_position_embeddings.
        let window = ctx ?? model.config.maxPositions
        guard window <= model.config.maxPositions else {
            throw CLIError("--ctx \(window) is above the model's \(model.config.maxPositions) positions (max_position_embeddings in config.json)")
        }
        let prefix = model.config.bosTokenID ?? model.config.eosTokenIDs.first ?? 0
        let progress = Progress(total: items.count, label: task.rawValue)
        let (score, _) = try task.evaluate(items, model: model, tokenizer: tokenizer, prefixToken: prefix, window: window,
                                           batch: batch ?? MultipleChoiceTask.itemsPerBatch) { progress.update($0) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(score), as: UTF8.self))
            return
        }
        print(String(format: "%@: acc %.4f ± %.4f", task.rawValue, score.acc, score.accStderr)
              + (score.accNorm.map { String(format: ", acc_norm %.4f ± %.4f", $0, score.accNormStderr ?? .nan) } ?? ""))
        print(String(format: "%d items, %.1f s, %.1f items/s", score.items, score.seconds, score.itemsPerSecond))
    }
}
extension EvaluationText.GPTQCorpus: ExpressibleByArgument {}
