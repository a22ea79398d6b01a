import Foundation
import LQFormats

/// tokenizer.json and tokenizer_config.json rebuilt from a GGUF file's vocabulary, for byte-level
/// BPE models (tokenizer.ggml.model "gpt2"). The pre-tokenizer follows tokenizer.ggml.pre the way
/// llama.cpp maps Hugging Face tokenizers to it.
extension GGUFConverter {
    func strings(_ key: String) throws -> [String] {
        guard let a = try meta(key).array else { throw ConvertError.unsupported(path: gguf.path, what: "metadata '\(key)' is not an array") }
        return a.map { $0.string ?? "" }
    }

    /// The pre-tokenizer for a llama.cpp pre-tokenizer name.
    func preTokenizer(_ pre: String) throws -> (pre: [String: Any], ignoreMerges: Bool) {
        let byteLevel: (Bool) -> [String: Any] = { regex in
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
        }
        switch pre {
        case "gpt2", "default":
            return (byteLevel(true), false)
        case "smollm":
            return (["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(true)]], false)
        case "llama-bpe", "llama3":
            let pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
            return (["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false], byteLevel(false)]], true)
        default:
            throw ConvertError.unsupported(path: gguf.path, what: "tokenizer.ggml.pre '\(pre)' is not supported (gpt2, smollm, llama-bpe)")
        }
    }

    public func tokenizerJSON() throws -> [String: Any] {
        let model = try meta("tokenizer.ggml.model").string ?? "?"
        guard model == "gpt2" else {
            throw ConvertError.unsupported(path: gguf.path, what: "tokenizer.ggml.model '\(model)' is not supported yet (gpt2 byte-level BPE)")
        }
        let tokens = try strings("tokenizer.ggml.tokens")
        let merges = try strings("tokenizer.ggml.merges")
        let types = gguf.metadata["tokenizer.ggml.token_type"]?.array?.map { $0.int ?? 1 } ?? []
        var vocab: [String: Any] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        // Control (3) and user-defined (4) tokens are added tokens; control ones are special.
        var added: [[String: Any]] = []
        for (i, t) in types.enumerated() where t == 3 || t == 4 {
            added.append(["id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": t == 4, "special": t == 3])
        }
        let (pre, ignoreMerges) = try preTokenizer(gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default")
        return [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": NSNull(),
            "pre_tokenizer": pre,
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
                      "vocab": vocab, "merges": merges],
        ]
    }

    public func tokenizerConfig() throws -> [String: Any] {
        let tokens = try strings("tokenizer.ggml.tokens")
        func token(_ key: String) -> Any {
            guard let id = gguf.metadata[key]?.int, id >= 0, id < tokens.count else { return NSNull() }
            return tokens[id]
        }
        var config: [String: Any] = [
            "add_bos_token": gguf.metadata["tokenizer.ggml.add_bos_token"]?.bool ?? false,
            "add_eos_token": gguf.metadata["tokenizer.ggml.add_eos_token"]?.bool ?? false,
            "bos_token": token("tokenizer.ggml.bos_token_id"), "eos_token": token("tokenizer.ggml.eos_token_id"),
            "unk_token": token("tokenizer.ggml.unknown_token_id"), "pad_token": token("tokenizer.ggml.padding_token_id"),
            "clean_up_tokenization_spaces": false, "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": gguf.metadata[architecture + ".context_length"]?.int ?? 2048,
        ]
        if let template = gguf.metadata["tokenizer.chat_template"]?.string { config["chat_template"] = template }
        return config
    }

    public func generationConfig() -> [String: Any] {
        var out: [String: Any] = ["_from_model_config": true]
        if let bos = gguf.metadata["tokenizer.ggml.bos_token_id"]?.int { out["bos_token_id"] = bos }
        if let eos = gguf.metadata["tokenizer.ggml.eos_token_id"]?.int { out["eos_token_id"] = eos }
        return out
    }
}
