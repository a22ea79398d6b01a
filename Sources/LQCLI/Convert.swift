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

    @Option(help: "The output directory.")
    var out: String

    @Option(help: "bf16, f16 or f32 for the weights.")
    var dtype: String = "bf16"

    @Flag(help: "Replace --out if it exists.")
    var overwrite = false

    func validate() throws {
        guard ["bf16", "f16", "f32"].contains(dtype) else { throw ValidationError("--dtype must be bf16, f16 or f32") }
    }

    func run() throws {
        do {
            let start = Timing.now()
            let converter = GGUFConverter(gguf: try GGUFFile(path: gguf))
            let storage: DType = ["bf16": .bf16, "f16": .f16, "f32": .f32][dtype]!
            let config = try converter.config(dtype: storage)
            let tokenizer = try converter.tokenizerJSON()
            let tokenizerConfig = try converter.tokenizerConfig()
            let tensors = try converter.tensors(dtype: storage)
            let output = try StagedDirectory(destination: out, overwrite: overwrite)
            var committed = false
            defer { if !committed { output.abandon() } }
            try CheckpointWriter.write(tensors, toDirectory: output.staging)
            try ModelFiles.writeJSON(config, to: output.path("config.json"))
            try ModelFiles.writeJSON(tokenizer, to: output.path("tokenizer.json"))
            try ModelFiles.writeJSON(tokenizerConfig, to: output.path("tokenizer_config.json"))
            try ModelFiles.writeJSON(converter.generationConfig(), to: output.path("generation_config.json"))
            try output.commit()
            committed = true
            print("converted \(tensors.count) tensors (\(converter.architecture), \(dtype)) in "
                  + String(format: "%.1f s", Timing.now() - start) + " → \(output.destination)")
        } catch {
            printError("lqlora convert: error: \(error)")
            throw ExitCode.failure
        }
    }
}
