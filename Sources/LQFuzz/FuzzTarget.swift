import Foundation
import LQFormats
import LQModel
import LQTrain

/// The four parsers that read files a user hands lqlora, each run as the commands run them:
/// whatever the bytes, the only acceptable outcomes are a result or a thrown error.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// SafeTensorsFile: header, offsets, then every readable tensor decoded.
    case safetensors
    /// GGUFFile, then on an accepted file the whole conversion (config, tokenizer, every tensor).
    case gguf
    /// tokenizer.json through loadTokenizer (checked against a vocabulary of 2^16), then a few
    /// texts encoded and decoded: an endless loop shows as a hang.
    case tokenizer
    /// A finetuning YAML config through TrainConfig, then written back as YAML.
    case yaml

    public enum Format: Sendable { case gguf, safetensors, json, yaml }

    public var format: Format {
        switch self {
        case .safetensors: return .safetensors
        case .gguf: return .gguf
        case .tokenizer: return .json
        case .yaml: return .yaml
        }
    }

    /// The file name the input is written to (the tokenizer loader reads a directory's tokenizer.json).
    public var fileName: String {
        switch self {
        case .safetensors: return "input.safetensors"
        case .gguf: return "input.gguf"
        case .tokenizer: return "tokenizer.json"
        case .yaml: return "config.yaml"
        }
    }

    public enum Outcome: Equatable, Sendable {
        case accepted
        /// The error's description.
        case refused(String)
    }

    static let texts = ["Hello world", "  two  spaces\n\ttab\r\n", "日本語 🙂 emoji", "<|im_start|>user\nhi<|im_end|>", "12345 3.14",
                        "ünïcödé e\u{301}", "", "a", "'s 're 'll", String(repeating: "ab", count: 40)]

    /// Runs the parser on the file at `path` (inside `directory`).
    public func run(path: String, directory: String) -> Outcome {
        do {
            switch self {
            case .safetensors:
                let file = try SafeTensorsFile(path: path)
                for e in file.entries where e.dtype.isSupported {
                    let t = try file.floatTensor(e)
                    _ = t.array.reduce(0, +)
                    _ = file.halfMatrix(e)
                }
            case .gguf:
                let file = try GGUFFile(path: path)
                for info in file.tensors where GGMLType(rawValue: info.rawType) != nil { _ = try file.floatTensor(info) }
                let converter = GGUFConverter(gguf: file)
                let config = try converter.config(dtype: .bf16)
                let tokenizer = try converter.tokenizerJSON()
                let tokenizerConfig = try converter.tokenizerConfig()
                for t in try converter.tensors(dtype: .bf16) {
                    var bytes = [UInt8](repeating: 0, count: t.byteCount)
                    try bytes.withUnsafeMutableBytes { try t.fill($0) }
                }
                for object in [config, tokenizer, tokenizerConfig, converter.generationConfig()] { _ = JSONText.serialize(object) }
            case .tokenizer:
                let tokenizer = try loadTokenizer(directory: directory, modelVocabularySize: 1 << 16)
                for text in Self.texts {
                    let ids = try tokenizer.encode(text, addSpecialTokens: true)
                    _ = tokenizer.decode(ids + [-1, 1 << 40, tokenizer.vocabularySize], skipSpecialTokens: text.isEmpty)
                }
            case .yaml:
                let config = try TrainConfig(path: path, overrides: ["train.seed=3"])
                _ = config.yaml(help: true)
            }
            return .accepted
        } catch {
            return .refused("\(error)")
        }
    }
}
