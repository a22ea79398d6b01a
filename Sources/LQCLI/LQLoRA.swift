import ArgumentParser
import LQTensor

/// The `lqlora` command tree.
public struct LQLoRA: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "lqlora",
        abstract: "Compress and finetune Hugging Face language models: NormalFloat, LQ-LoRA, LoRA.",
        version: version,
        subcommands: [Quantize.self, Allocate.self, Dequantize.self, Convert.self, Export.self, Eval.self, Generate.self, Merge.self, Finetune.self, Fisher.self, Tokenize.self, Embed.self, RAG.self, Inspect.self, Bench.self, Env.self])

    public init() {}
}
