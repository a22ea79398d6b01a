import CSentencePiece
import Foundation
import LQFormats

/// A SentencePiece vocabulary as convert_hf_to_gguf.py writes it for `tokenizer.ggml.model` "llama".
enum SentencePieceVocabulary {
    typealias Vocabulary = GGUFModelMetadata.Vocabulary
    typealias TokenType = GGUFModelMetadata.TokenType

    /// _create_vocab_sentencepiece: tokenizer.model's pieces with their scores and types, ids up to
    /// config.json's vocab_size that it lacks as [PAD{id}] (score −10000, unused); then
    /// added_tokens.json and tokenizer_config.json's added_tokens_decoder (score −1000, control when
    /// special, else user-defined with "▁" read as a space).
    static func fromModel(_ path: String, vocabSize: Int, tokenizerConfig tc: [String: Any]) throws -> Vocabulary {
        var message = [CChar](repeating: 0, count: 512)
        guard let model = lq_spm_open(path, &message, message.count) else {
            throw GGUFExportError.unsupportedTokenizer(path: path, what: "cannot be read by SentencePiece: \(String(cString: message))")
        }
        defer { lq_spm_close(model) }
        var out = Vocabulary(tokens: (0..<vocabSize).map { "[PAD\($0)]" }, scores: Array(repeating: -10000, count: vocabSize),
                             types: Array(repeating: TokenType.unused.rawValue, count: vocabSize))
        for id in 0..<min(Int(lq_spm_count(model)), vocabSize) {
            var length = 0
            let piece = lq_spm_piece(model, Int32(id), &length)!
            out.tokens[id] = String(decoding: UnsafeRawBufferPointer(start: piece, count: length), as: UTF8.self)
            out.scores[id] = lq_spm_score(model, Int32(id))
            out.types[id] = lq_spm_type(model, Int32(id))
        }
        let directory = (path as NSString).deletingLastPathComponent
        if let data = FileManager.default.contents(atPath: directory + "/added_tokens.json"),
           let addedTokens = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            for (token, id) in addedTokens {
                guard let id = (id as? NSNumber)?.intValue, id >= 0, id < vocabSize else { continue }
                out.tokens[id] = token
                out.scores[id] = -1000
                out.types[id] = TokenType.userDefined.rawValue
            }
        }
        for (key, entry) in (tc["added_tokens_decoder"] as? [String: Any]) ?? [:] {
            guard let id = Int(key), id >= 0, id < vocabSize, let entry = entry as? [String: Any], var token = entry["content"] as? String else { continue }
            if entry["special"] as? Bool == true || GGUFModelMetadata.looksSpecial(token) {
                out.types[id] = TokenType.control.rawValue
            } else {
                token = token.replacingOccurrences(of: "\u{2581}", with: " ")  // user-defined spaces, pre-normalized
                out.types[id] = TokenType.userDefined.rawValue
            }
            out.scores[id] = -1000
            out.tokens[id] = token
        }
        return out
    }

    /// _set_vocab_llama_hf (gguf-py's LlamaHfVocab, which reads tokenizer.json through transformers):
    /// the model's vocabulary in id order, then the added tokens past it; every score −1000 (the
    /// scores live only in tokenizer.model), byte pieces typed byte and the special tokens control.
    static func fromTokenizerJSON(vocab: [String: Any], added: [[String: Any]], tokenizerConfig tc: [String: Any], path: String) throws -> Vocabulary {
        var byID: [Int: String] = [:]
        for (t, id) in vocab { if let id = (id as? NSNumber)?.intValue { byID[id] = t } }
        let base = byID.count
        guard byID.keys.allSatisfy({ (0..<base).contains($0) }) else {
            throw GGUFExportError.unsupportedTokenizer(path: path, what: "model.vocab's ids are not 0..<\(base)")
        }
        var addedIDs: [(id: Int, content: String)] = []
        for a in added {
            guard let id = (a["id"] as? NSNumber)?.intValue, let content = a["content"] as? String else { continue }
            if id < base { byID[id] = content } else { addedIDs.append((id, content)) }
        }
        addedIDs.sort { $0.id < $1.id }
        // transformers' all_special_tokens: the named special tokens and the additional ones.
        func content(_ entry: Any?) -> String? { (entry as? String) ?? ((entry as? [String: Any])?["content"] as? String) }
        var specials = Set(["bos", "eos", "unk", "sep", "pad", "cls", "mask"].compactMap { content(tc[$0 + "_token"]) })
        for key in ["additional_special_tokens", "extra_special_tokens"] { for e in (tc[key] as? [Any]) ?? [] { content(e).map { specials.insert($0) } } }
        func isByte(_ t: String) -> Bool { t.range(of: "^<0x[0-9A-Fa-f]{2}>$", options: .regularExpression) != nil }
        var out = Vocabulary(tokens: [], scores: [], types: [])
        for id in 0..<base {
            let t = byID[id]!
            out.tokens.append(t)
            out.types.append(isByte(t) ? TokenType.byte.rawValue : specials.contains(t) ? TokenType.control.rawValue : TokenType.normal.rawValue)
        }
        for (_, t) in addedIDs {
            out.tokens.append(t)
            out.types.append(specials.contains(t) ? TokenType.control.rawValue : TokenType.userDefined.rawValue)
        }
        out.scores = Array(repeating: -1000, count: out.tokens.count)
        // llama.cpp's SentencePiece tokenizer merges the pair of highest score first; with equal scores it
        // merges from the left, which can split words differently from the BPE merges transformers applies.
        WarnOnce.say("warning: \(path): no tokenizer.model beside it, so every token's score is written as -1000, as convert_hf_to_gguf.py "
                     + "writes it; llama.cpp may then tokenize differently from transformers. Put the checkpoint's tokenizer.model there for its scores.")
        return out
    }
}
