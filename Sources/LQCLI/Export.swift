import ArgumentParser
import Foundation
import LQFormats
import LQModel

extension GGUFFileType: ExpressibleByArgument {}

/// `lqlora export`: a model (optionally with an adapter merged) as a llama.cpp GGUF file, or an
/// adapter as llama.cpp's LoRA GGUF. The library does the work (GGUFExport); this parses and prints.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model as a GGUF file for llama.cpp / Ollama / LM Studio, or an adapter as llama.cpp's LoRA GGUF.",
        discussion: """
            --type f32|f16|bf16|q8_0 write every matrix in that type (as convert_hf_to_gguf.py --outtype);
            q4_0, q4_1, q4_k, q5_k, q6_k choose each tensor's type as llama-quantize does for Q4_0, Q4_1,
            Q4_K_M, Q5_K_M and Q6_K. Norms stay F32. Quantized bases are dequantized one matrix at a time.
            """)

    @Option(help: "The model directory (dense or quantized: NormalFloat, LQ-LoRA, GPTQ/RTN).")
    var model: String

    @Option(help: "A PEFT LoRA adapter directory: merged with --merge, or exported alone with --adapter-only.")
    var adapter: String?

    @Option(help: "The .gguf file to write (replaced atomically).")
    var out: String

    @Option(help: "f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k (default f16; f32 for --adapter-only).")
    var type: GGUFFileType?

    @Flag(help: "Fold the adapter into the weights: dequant(W) + s·B·A before quantizing.")
    var merge = false

    @Flag(help: "Write only the adapter, as llama.cpp's LoRA GGUF (llama-cli --lora FILE).")
    var adapterOnly = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if merge && adapterOnly { throw ValidationError("--merge and --adapter-only exclude each other") }
    }

    func run() throws {
        try CommandFailure.exits("export") {
            threadOptions.configure()
            let start = Timing.now()
            if merge && adapter == nil { throw GGUFExportError.mergeWithoutAdapter }
            let lock = try OutputLock(for: out)  // one run writes --out at a time
            defer { lock.release() }
            if adapterOnly {
                guard let adapter else { throw ValidationError("--adapter-only needs --adapter DIR") }
                let s = try GGUFExport.adapter(adapter, model: model, type: type ?? .f32, to: out)
                print("exported \(s.merged) LoRA pairs (\(s.tensors) tensors, \((type ?? .f32).rawValue)) in "
                      + String(format: "%.1f s", Timing.now() - start) + " → \(out)")
                return
            }
            if let adapter, !merge { throw GGUFExportError.adapterWithoutMerge(adapter: adapter) }
            let fileType = type ?? .f16
            let progress = Progress(total: 1, label: "export")
            let s = try GGUFExport.model(model, adapter: adapter, type: fileType, to: out) { done, total in
                progress.retotal(total)
                progress.update(done)
            }
            let types: String = s.types.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            let merged: String = adapter == nil ? "" : ", \(s.merged) merged with the adapter"
            let seconds = String(format: "%.1f s", Timing.now() - start)
            print("exported \(s.tensors) tensors (\(fileType.llamaName): \(types))\(merged), \(Format.bytes(s.bytes)) in \(seconds) → \(out)")
        }
    }
}
