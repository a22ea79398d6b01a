import Foundation
import LQFormats

/// The metadata of an exported GGUF file, key by key as llama.cpp's `convert_hf_to_gguf.py` writes it
/// for a Llama-family checkpoint (`TextModel.set_gguf_parameters`, `LlamaModel.set_gguf_parameters`,
/// `_set_vocab_gpt2` with gguf-py's `SpecialVocab`), in its order. The tokenizer is read from
/// tokenizer.json and tokenizer_config.json without transformers; `tokenizer.ggml.pre` is named
/// from the pre-tokenizer's structure (the script hashes the tokenizer's output instead), for the
/// three byte-level pre-tokenizers lqlora reads (gpt2, smollm, llama-bpe).
enum GGUFModelMetadata {
    typealias Entry = (key: String, value: GGUFMetadata)

    /// convert_hf_to_gguf.py's `gguf.TokenType`.
    enum TokenType: Int32 { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    static func model(directory: String, config: LlamaConfig, fileType: GGUFFileType) throws -> [Entry] {
        let json = try ConfigReader(path: directory + "/config.json").json
        var out: [Entry] = [("general.architecture", .string("llama")), ("general.type", .string("model"))]
        out += naming(URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent)
        let p = "llama."
        out += [(p + "block_count", .u32(UInt32(config.layerCount))), (p + "context_length", .u32(UInt32(config.maxPositions))),
                (p + "embedding_length", .u32(UInt32(config.hiddenSize))), (p + "feed_forward_length", .u32(UInt32(config.intermediateSize))),
                (p + "attention.head_count", .u32(UInt32(config.headCount))), (p + "attention.head_count_kv", .u32(UInt32(config.kvHeadCount)))]
        if case let .linear(factor) = config.ropeScaling {
            out += [(p + "rope.scaling.type", .string("linear")), (p + "rope.scaling.factor", .f32(factor))]
        }
        out += [(p + "rope.freq_base", .f32(config.ropeTheta)), (p + "attention.layer_norm_rms_epsilon", .f32(config.rmsNormEps))]
        if json["head_dim"] is NSNumber {
            out += [(p + "attention.key_length", .u32(UInt32(config.headDim))), (p + "attention.value_length", .u32(UInt32(config.headDim)))]
        }
        out += [("general.file_type", .u32(fileType.fileTypeID)), (p + "vocab_size", .u32(UInt32(config.vocabSize))),
                (p + "rope.dimension_count", .u32(UInt32(config.headDim))), ("general.quantization_version", .u32(2))]
        out += try tokenizer(directory: directory, config: config, json: json)
        if fileType.madeByLlamaQuantize {  // llama-quantize sets these two again, which moves them to the end
            out = out.filter { $0.key != "general.quantization_version" && $0.key != "general.file_type" }
            out += [("general.quantization_version", .u32(2)), ("general.file_type", .u32(fileType.fileTypeID))]
        }
        return out
    }

    /// gguf-py's Metadata.id_to_title: words joined by spaces, lower-case words capitalised (not
    /// versions or numbers).
    static func title(_ name: String) -> String {
        name.replacingOccurrences(of: "-", with: " ").split(separator: " ").map { w -> String in
            let word = String(w)
            let lower = word == word.lowercased() && word != word.uppercased()
            let numeric = word.range(of: #"^(v\d+(?:\.\d+)*|\d.*)$"#, options: .regularExpression) != nil
            return lower && !numeric ? word.prefix(1).uppercased() + word.dropFirst() : word
        }.joined(separator: " ")
    }

    /// general.name, finetune, basename and size_label as gguf-py's metadata heuristics find them in a
    /// directory name "Base-Size-Finetune" ("SmolLM2-135M-Instruct"); just the name otherwise.
    static func naming(_ directoryName: String) -> [Entry] {
        let parts = directoryName.split(separator: "-").map(String.init)
        guard let i = parts.firstIndex(where: { $0.range(of: #"^(\d+x)?\d+(\.\d+)?[KMBT]$"#, options: .regularExpression) != nil }), i > 0 else {
            return [("general.name", .string(title(directoryName)))]
        }
        var out: [Entry] = [("general.name", .string(title(directoryName)))]
        if i + 1 < parts.count { out.append(("general.finetune", .string(parts[(i + 1)...].joined(separator: "-")))) }
        out += [("general.basename", .string(parts[..<i].joined(separator: "-"))), ("general.size_label", .string(parts[i]))]
        return out
    }

    /// LlamaModel.generate_extra_tensors: llama3 RoPE scaling as a rope_freqs.weight tensor of factors.
    static func ropeFactors(_ config: LlamaConfig) -> [Float]? {
        guard case let .llama3(factor, low, high, original) = config.ropeScaling else { return nil }
        let base = Double(config.ropeTheta), dim = config.headDim
        let lowWavelen = Double(original) / Double(low), highWavelen = Double(original) / Double(high)
        return stride(from: 0, to: dim, by: 2).map { i in
            // torch: 1 / base ** (arange(0, dim, 2, float32) / dim), in float32, then Python floats.
            let freq = Double(Float(1) / Float(pow(Double(Float(base)), Double(Float(i) / Float(dim)))))
            let wavelen = 2 * Double.pi / freq
            if wavelen < highWavelen { return 1 }
            if wavelen > lowWavelen { return factor }
            let smooth = (Double(original) / wavelen - Double(low)) / (Double(high) - Double(low))
            return Float(1 / ((1 - smooth) / Double(factor) + smooth))
        }
    }

    /// The vocabulary as LlamaModel.set_vocab writes it: a SentencePiece BPE (byte fallback) as
    /// `tokenizer.ggml.model` "llama", from tokenizer.model when it is there and from tokenizer.json
    /// otherwise; a byte-level BPE as "gpt2"; then gguf-py's SpecialVocab.
    static func tokenizer(directory: String, config: LlamaConfig, json: [String: Any]) throws -> [Entry] {
        let path = directory + "/tokenizer.json"
        guard let data = FileManager.default.contents(atPath: path),
              let tok = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = tok["model"] as? [String: Any], let vocab = model["vocab"] as? [String: Any] else {
            throw GGUFExportError.unsupportedTokenizer(path: path, what: "is missing or has no model.vocab")
        }
        guard model["type"] as? String == "BPE" else {
            throw GGUFExportError.unsupportedTokenizer(path: path, what: "a \(model["type"] ?? "?") model cannot be exported (BPE can, byte-level or SentencePiece)")
        }
        let tc = (FileManager.default.contents(atPath: directory + "/" + TokenizerConfig.fileName))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        let added = (tok["added_tokens"] as? [[String: Any]]) ?? []
        var out: [Entry] = []
        if let prefix = tc["add_prefix_space"] as? Bool { out.append(("tokenizer.ggml.add_space_prefix", .bool(prefix))) }
        let vocabulary: Vocabulary
        if model["byte_fallback"] as? Bool == true {
            let spm = directory + "/tokenizer.model"
            vocabulary = FileManager.default.fileExists(atPath: spm)
                ? try SentencePieceVocabulary.fromModel(spm, vocabSize: config.vocabSize, tokenizerConfig: tc)
                : try SentencePieceVocabulary.fromTokenizerJSON(vocab: vocab, added: added, tokenizerConfig: tc, path: path)
            out += [("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.pre", .string("default")),
                    ("tokenizer.ggml.tokens", .strings(vocabulary.tokens)), ("tokenizer.ggml.scores", .f32s(vocabulary.scores)),
                    ("tokenizer.ggml.token_type", .i32s(vocabulary.types))]
        } else {
            vocabulary = byteLevelVocabulary(vocab: vocab, added: added, vocabSize: config.vocabSize)
            let merges: [String] = ((model["merges"] as? [Any]) ?? []).compactMap { m in
                if let s = m as? String { return s }
                if let pair = m as? [String], pair.count == 2 { return pair[0] + " " + pair[1] }
                return nil
            }
            out += [("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(try preTokenizerName(tok["pre_tokenizer"], path: path))),
                    ("tokenizer.ggml.tokens", .strings(vocabulary.tokens)), ("tokenizer.ggml.token_type", .i32s(vocabulary.types)),
                    ("tokenizer.ggml.merges", .strings(merges))]
        }
        out += specialVocabulary(directory: directory, tokenizerConfig: tc, added: added, json: json, tokenCount: vocabulary.tokens.count)
        return out
    }

    /// Token texts, scores (SentencePiece only) and types, indexed by id.
    struct Vocabulary {
        var tokens: [String], scores: [Float], types: [Int32]
    }

    /// _set_vocab_gpt2: tokenizer.json's vocabulary and added tokens, ids without a token as [PAD{id}].
    static func byteLevelVocabulary(vocab: [String: Any], added: [[String: Any]], vocabSize: Int) -> Vocabulary {
        var byID: [Int: String] = [:]
        for (t, id) in vocab { if let id = (id as? NSNumber)?.intValue { byID[id] = t } }
        var addedByID: [Int: [String: Any]] = [:]
        for a in added {
            if let id = (a["id"] as? NSNumber)?.intValue, let content = a["content"] as? String {
                byID[id] = content
                addedByID[id] = a
            }
        }
        var out = Vocabulary(tokens: [], scores: [], types: [])
        for i in 0..<vocabSize {
            guard let t = byID[i] else {
                out.tokens.append("[PAD\(i)]")
                out.types.append(TokenType.unused.rawValue)
                continue
            }
            out.tokens.append(t)
            if let a = addedByID[i] {
                let special = a["special"] as? Bool ?? false
                out.types.append(special || looksSpecial(t) ? TokenType.control.rawValue : TokenType.userDefined.rawValue)
            } else {
                out.types.append(TokenType.normal.rawValue)
            }
        }
        return out
    }

    /// gguf-py SpecialVocab: tokenizer_config's <type>_token found among the added tokens, else
    /// config.json's <type>_token_id; add_bos/add_eos; the chat template.
    static func specialVocabulary(directory: String, tokenizerConfig tc: [String: Any], added: [[String: Any]], json: [String: Any],
                                  tokenCount: Int) -> [Entry] {
        var out: [Entry] = []
        let keys = [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"), ("sep", "seperator_token_id"),
                    ("pad", "padding_token_id"), ("cls", "cls_token_id"), ("mask", "mask_token_id")]
        for (typ, key) in keys {
            let entry = tc[typ + "_token"]
            let content = (entry as? String) ?? ((entry as? [String: Any])?["content"] as? String)
            var id = content.flatMap { c in added.first { $0["content"] as? String == c }.flatMap { ($0["id"] as? NSNumber)?.intValue } }
            if id == nil, let n = json[typ + "_token_id"] as? NSNumber { id = n.intValue }
            if let id, id >= 0, id < tokenCount { out.append(("tokenizer.ggml." + key, .u32(UInt32(id)))) }
        }
        if let b = tc["add_bos_token"] as? Bool { out.append(("tokenizer.ggml.add_bos_token", .bool(b))) }
        if let e = tc["add_eos_token"] as? Bool { out.append(("tokenizer.ggml.add_eos_token", .bool(e))) }
        if let template = TokenizerConfig(directory: directory).chatTemplate { out.append(("tokenizer.chat_template", .string(template))) }
        return out
    }

    /// convert_hf_to_gguf.py's does_token_look_special.
    static func looksSpecial(_ t: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(t) || (t.hasPrefix("<|") && t.hasSuffix("|>"))
            || (t.hasPrefix("<｜") && t.hasSuffix("｜>"))
    }

    /// llama.cpp's pre-tokenizer name for a tokenizer.json pre_tokenizer (the inverse of
    /// GGUFConverter.preTokenizer).
    static func preTokenizerName(_ pre: Any?, path: String) throws -> String {
        let p = pre as? [String: Any]
        func isByteLevel(_ x: [String: Any]?, regex: Bool) -> Bool { x?["type"] as? String == "ByteLevel" && (x?["use_regex"] as? Bool ?? true) == regex }
        if isByteLevel(p, regex: true) { return "gpt2" }
        if p?["type"] as? String == "Sequence", let list = p?["pretokenizers"] as? [[String: Any]], list.count == 2 {
            if list[0]["type"] as? String == "Digits", list[0]["individual_digits"] as? Bool == true, isByteLevel(list[1], regex: true) { return "smollm" }
            if list[0]["type"] as? String == "Split", isByteLevel(list[1], regex: false),
               ((list[0]["pattern"] as? [String: Any])?["Regex"] as? String)?.contains(#"\p{N}{1,3}"#) == true { return "llama-bpe" }
        }
        throw GGUFExportError.unsupportedTokenizer(path: path, what: "its pre_tokenizer matches none llama.cpp names here (gpt2, smollm, llama-bpe)")
    }

    /// The metadata of an adapter GGUF as convert_lora_to_gguf.py writes it (no vocabulary, no file type).
    static func adapter(model: String, adapter: String, alpha: Float, fileType: GGUFFileType) -> [Entry] {
        [("general.architecture", .string("llama")), ("general.type", .string("adapter")), ("adapter.type", .string("lora")),
         ("general.name", .string(title(URL(fileURLWithPath: adapter).standardizedFileURL.lastPathComponent))),
         ("adapter.lora.alpha", .f32(alpha)), ("general.quantization_version", .u32(2))]
    }
}
