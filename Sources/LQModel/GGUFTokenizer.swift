import Foundation
import LQFormats

/// tokenizer.json and tokenizer_config.json rebuilt from a GGUF file's vocabulary: byte-level BPE
/// (tokenizer.ggml.model "gpt2", with merges; the pre-tokenizer follows tokenizer.ggml.pre the way
/// llama.cpp maps Hugging Face tokenizers to it) and SentencePiece BPE ("llama": tokens, scores and
/// types, no merges; the merges are recovered from the scores as transformers does).
extension GGUFConverter {
    func strings(_ key: String) throws -> [String] {
        guard let a = try meta(key).array else { throw bad(key, "is not an array") }
        return try a.enumerated().map { i, v in
            guard let s = v.string else { throw bad(key, "holds \(v) at index \(i), not a string") }
            return s
        }
    }

    /// tokenizer.ggml.token_type: one integer per token (all normal, 1, when absent).
    func tokenTypes(count: Int) throws -> [Int] {
        let key = "tokenizer.ggml.token_type"
        guard let v = gguf.metadata[key] else { return [Int](repeating: 1, count: count) }
        guard let a = v.array, a.count == count else { throw bad(key, "must hold one integer per token (\(count))") }
        return try a.enumerated().map { i, v in
            guard let t = v.int else { throw bad(key, "holds \(v) at index \(i), not an integer") }
            return t
        }
    }

    /// The tokenizer.json built from the vocabulary, checked by loading it as the model will.
    func checked(_ json: [String: Any]) throws -> [String: Any] {
        do { _ = try BPETokenizer(json: json, path: "tokenizer.ggml") } catch let e as TokenizerError {
            throw GGUFError.badTokenizer(path: gguf.path, detail: e.description)
        }
        return json
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
        if model == "llama" { return try sentencePieceJSON() }
        guard model == "gpt2" else {
            throw ConvertError.unsupported(path: gguf.path, what: "tokenizer.ggml.model '\(model)' is not supported (gpt2 byte-level BPE, llama SentencePiece BPE)")
        }
        let tokens = try strings("tokenizer.ggml.tokens")
        let merges = try strings("tokenizer.ggml.merges")
        let types = try tokenTypes(count: tokens.count)
        var vocab: [String: Any] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        // Control (3) and user-defined (4) tokens are added tokens; control ones are special.
        var added: [[String: Any]] = []
        for (i, t) in types.enumerated() where t == 3 || t == 4 {
            added.append(["id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": t == 4, "special": t == 3])
        }
        let (pre, ignoreMerges) = try preTokenizer(gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default")
        return try checked([
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": NSNull(),
            "pre_tokenizer": pre,
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
                      "vocab": vocab, "merges": merges],
        ])
    }

    /// SentencePiece BPE as transformers' LlamaTokenizer builds it from a GGUF: Metaspace ("▁",
    /// prepended to the first word), byte fallback to <0xNN> tokens, BOS added when the file says so.
    func sentencePieceJSON() throws -> [String: Any] {
        let tokens = try strings("tokenizer.ggml.tokens")
        guard let scores = gguf.metadata["tokenizer.ggml.scores"]?.array?.compactMap(\.double), scores.count == tokens.count,
              scores.allSatisfy(\.isFinite) else {
            throw bad("tokenizer.ggml.scores", "must hold one finite number per token (\(tokens.count)) in a SentencePiece vocabulary")
        }
        let types = try tokenTypes(count: tokens.count)
        var vocab: [String: Any] = [:], ids: [String: Int] = [:]
        for (i, t) in tokens.enumerated() {  // a repeated token keeps its last id, as in transformers
            vocab[t] = i
            ids[t] = i
        }
        let merges = Self.mergesFromScores(tokens: tokens, scores: scores, ids: ids)
        var added: [[String: Any]] = []
        for (i, t) in types.enumerated() where t == 3 || t == 4 {
            added.append(["id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": t == 3])
        }
        var post: Any = NSNull()
        if gguf.metadata["tokenizer.ggml.add_bos_token"]?.bool ?? true, let bos = gguf.metadata["tokenizer.ggml.bos_token_id"]?.int,
           bos >= 0, bos < tokens.count {
            let b = tokens[bos]
            post = ["type": "TemplateProcessing",
                    "single": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                    "pair": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                             ["SpecialToken": ["id": b, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                    "special_tokens": [b: ["id": b, "ids": [bos], "tokens": [b]]]] as [String: Any]
        }
        return try checked([
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false],
            "post_processor": post,
            "decoder": ["type": "Sequence", "decoders": [
                ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
                ["type": "Strip", "content": " ", "start": 1, "stop": 0]]],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges.map { [$0.0, $0.1] }],
        ])
    }

    /// transformers' generate_merges: every split of every token into two vocabulary tokens is a
    /// merge ranked by the whole token's score (best first), ties by longer left then longer right
    /// piece (in code points), then by token order and the pieces' ids.
    static func mergesFromScores(tokens: [String], scores: [Double], ids: [String: Int]) -> [(String, String)] {
        var candidates: [(left: String, right: String, score: Double, leftLength: Int, rightLength: Int)] = []
        var seen = Set<String>()
        // Both pieces are tokens, so only cuts at the lengths tokens have can give a merge (this
        // keeps one very long token from costing the square of its length).
        let lengths = Set(tokens.map(\.unicodeScalars.count))
        for (index, token) in tokens.enumerated() where seen.insert(token).inserted {
            let scalars = Array(token.unicodeScalars)
            var local: [(String, String, Int, Int)] = []
            for cut in stride(from: 1, to: scalars.count, by: 1) where lengths.contains(cut) && lengths.contains(scalars.count - cut) {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<cut])
                r.append(contentsOf: scalars[cut...])
                let left = String(l), right = String(r)
                if let li = ids[left], let ri = ids[right] { local.append((left, right, li, ri)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            let score = scores[ids[token] ?? index]  // the last occurrence's score, as dict(zip(tokens, scores)) keeps
            for (left, right, _, _) in local {
                candidates.append((left, right, score, left.unicodeScalars.count, right.unicodeScalars.count))
            }
        }
        // A stable sort, descending on (score, left length, right length), like Python's sorted(reverse=True).
        let order = candidates.indices.sorted { a, b in
            let x = candidates[a], y = candidates[b]
            if x.score != y.score { return x.score > y.score }
            if x.leftLength != y.leftLength { return x.leftLength > y.leftLength }
            if x.rightLength != y.rightLength { return x.rightLength > y.rightLength }
            return a < b
        }
        return order.map { (candidates[$0].left, candidates[$0].right) }
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
