import ArgumentParser
import Foundation
import LQFormats
import LQModel

/// `lqlora convert --from-gguf`.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a llama.cpp GGUF file (Llama family; F32/F16/BF16/Q8_0/Q4_0/Q4_1) to a Hugging Face directory.")

    @Option(name: .customLong("from-gguf"), help: "The .gguf file.")
    var gguf: String

    @OptionGroup var output: OutputOptions

    @Option(help: "bf16, f16 or f32 for the weights.")
    var dtype: String = "bf16"

    func validate() throws {
        guard ["bf16", "f16", "f32"].contains(dtype) else { throw ValidationError("--dtype must be bf16, f16 or f32") }
    }

    func run() throws {
        try CommandFailure.exits("convert") {
            let start = Timing.now()
            let converter = GGUFConverter(gguf: try GGUFFile(path: gguf))
            let storage: DType = ["bf16": .bf16, "f16": .f16, "f32": .f32][dtype]!
            let config = try converter.config(dtype: storage)
            let tokenizer = try converter.tokenizerJSON()
            let tokenizerConfig = try converter.tokenizerConfig()
            let tensors = try converter.tensors(dtype: storage)
            let staged = try output.staged()
            var committed = false
            defer { if !committed { staged.abandon() } }
            try CheckpointWriter.write(tensors, toDirectory: staged.staging)
            try ModelFiles.writeJSON(config, to: staged.path("config.json"))
            try ModelFiles.writeJSON(tokenizer, to: staged.path("tokenizer.json"))
            try ModelFiles.writeJSON(tokenizerConfig, to: staged.path("tokenizer_config.json"))
            try ModelFiles.writeJSON(converter.generationConfig(), to: staged.path("generation_config.json"))
            try staged.commit()
            committed = true
            print("converted \(tensors.count) tensors (\(converter.architecture), \(dtype)) in "
                  + String(format: "%.1f s", Timing.now() - start) + " → \(staged.destination)")
        }
    }
}
