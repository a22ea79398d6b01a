import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTrain

/// `lqlora fisher`: the diagonal Fisher file that `quantize --method lq-lora --fisher` reads.
struct Fisher: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate the empirical diagonal Fisher of the target weights on calibration data (for quantize --fisher).",
        discussion: "Σ over examples (batch 1) of the squared gradient of the example's mean token loss, per weight of each target projection.")

    @Option(help: "The model directory (dense; a quantized base gives the Fisher of its dequantized weights).")
    var model: String

    @Option(help: "Calibration data: .txt (cut into --seq-len windows) or .jsonl in any finetune format, optionally .gz.")
    var data: String

    @Option(help: "The output safetensors file.")
    var out: String

    @Option(parsing: .unconditional, help: "Examples (windows) to use.")
    var samples = 128

    @Option(parsing: .unconditional, help: "Tokens per example.")
    var seqLen = 512

    @Option(help: "Comma-separated target projections.")
    var targets = TrainConfig.allTargets.joined(separator: ",")

    @Option(help: "Stored dtype: f32, bf16 or f16.")
    var dtype = "f32"

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        guard seqLen >= 2 else { throw ValidationError("--seq-len must be at least 2") }
        guard ["f32", "bf16", "f16"].contains(dtype) else { throw ValidationError("--dtype must be f32, bf16 or f16") }
        let list = targets.split(separator: ",").map(String.init)
        for t in list where !TrainConfig.allTargets.contains(t) {
            throw ValidationError("--targets: '\(t)' is not one of \(TrainConfig.allTargets.joined(separator: ", "))")
        }
    }

    func run() throws {
        try CommandFailure.exits("fisher") {
            threadOptions.configure()
            try deviceOptions.activate()
            let m = try LlamaModel(directory: model)
            let tokenizer = try loadTokenizer(directory: model, modelVocabularySize: m.config.vocabSize)
            let formatter = ExampleFormatter(tokenizer: tokenizer, eos: m.config.eosTokenIDs.first ?? 0,
                                             chat: ChatTemplate.of(directory: model), maskPrompt: false)
            let dataset = try Dataset(path: data, format: .auto, formatter: formatter, seqLen: seqLen, skipInvalid: false)
            let examples = Array(dataset.examples.prefix(samples))
            if examples.count < samples { printError("lqlora fisher: note: \(data) holds \(examples.count) examples; using all of them") }
            let progress = Progress(total: examples.count, label: "fisher")
            let tokens = examples.reduce(0) { $0 + $1.tokens.count }
            let fisher = FisherEstimator.estimate(m, examples: examples, targets: targets.split(separator: ",").map(String.init)) {
                progress.update($0, detail: String(format: "%.0f tokens/s", Double(tokens) * Double($0) / Double(examples.count) / max(Timing.now() - progress.startTime, 1e-9)))
            }
            let type: DType = dtype == "bf16" ? .bf16 : dtype == "f16" ? .f16 : .f32
            try SafeTensorsWriter.write(fisher.map { PendingTensor(name: $0.0, tensor: $0.1, dtype: type) }, to: out,
                                        metadata: ["format": "pt", "lqlora.fisher": "empirical diagonal Fisher, \(examples.count) examples of up to \(seqLen) tokens from \(data)"])
            print("Fisher of \(fisher.count) weights over \(examples.count) examples (\(tokens) tokens) → \(out)")
        }
    }
}
