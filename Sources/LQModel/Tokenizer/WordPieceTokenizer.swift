import Foundation

/// BERT's WordPiece as the `tokenizers` library runs it: BertNormalizer (clean text, spaces around
/// CJK ideographs, accents stripped when lowercasing, lowercase), BertPreTokenizer (split on
/// whitespace, isolate punctuation), then greedy longest-match-first with the "##" prefix.
public final class WordPieceTokenizer: Tokenizer, @unchecked Sendable {
    let vocab: [String: Int]
    /// id → token (ids may leave gaps).
    let tokens: [Int: String]
    public let vocabularySize: Int
    let unk: Int
    let prefix: String
    let maxChars: Int
    let lowercase: Bool
    let stripAccents: Bool
    let chineseChars: Bool
    let cleanText: Bool
    let added: [(content: String, id: Int, special: Bool)]
    let specialIds: Set<Int>
    let before: [Int], after: [Int]

    public init(json: [String: Any], path: String) throws {
        guard let model = json["model"] as? [String: Any], let v = model["vocab"] as? [String: Any] else {
            throw TokenizerError.unreadable(path: path, detail: "no 'model.vocab'")
        }
        var vocab: [String: Int] = [:]
        for (k, id) in v { vocab[k] = try checkedTokenID(id, token: k, path: path) }
        var added: [(String, Int, Bool)] = []
        for t in json["added_tokens"] as? [[String: Any]] ?? [] {
            guard let c = t["content"] as? String, let rawID = t["id"] else { continue }
            let id = try checkedTokenID(rawID, token: c, path: path)
            guard !c.isEmpty else { throw TokenizerError.unreadable(path: path, detail: "added token \(id) has empty content") }
            added.append((c, id, t["special"] as? Bool ?? false))
            vocab[c] = id
        }
        self.vocab = vocab
        (tokens, vocabularySize) = tokenTable(vocab)
        let unkToken = model["unk_token"] as? String ?? "[UNK]"
        guard let unk = vocab[unkToken] else { throw TokenizerError.unreadable(path: path, detail: "unk_token '\(unkToken)' is not in the vocabulary") }
        self.unk = unk
        prefix = model["continuing_subword_prefix"] as? String ?? "##"
        maxChars = (model["max_input_chars_per_word"] as? NSNumber)?.intValue ?? 100
        self.added = added.sorted { $0.0.count > $1.0.count }
        specialIds = Set(added.filter(\.2).map(\.1))
        let normalizer = json["normalizer"] as? [String: Any]
        if let normalizer, normalizer["type"] as? String != "BertNormalizer" {
            throw TokenizerError.unsupported(path: path, what: "normalizer '\(normalizer["type"] as? String ?? "?")' with WordPiece")
        }
        lowercase = normalizer?["lowercase"] as? Bool ?? false
        stripAccents = normalizer?["strip_accents"] as? Bool ?? lowercase
        chineseChars = normalizer?["handle_chinese_chars"] as? Bool ?? false
        cleanText = normalizer?["clean_text"] as? Bool ?? false
        if let pre = json["pre_tokenizer"] as? [String: Any], pre["type"] as? String != "BertPreTokenizer" {
            throw TokenizerError.unsupported(path: path, what: "pre_tokenizer '\(pre["type"] as? String ?? "?")' with WordPiece")
        }
        (before, after) = BPETokenizer.parsePost(json["post_processor"], vocab: vocab)
    }

    public func id(of token: String) -> Int? { vocab[token] }

    static func isChinese(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    func normalize(_ text: Substring) -> String {
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if cleanText {
                if s.value == 0 || s.value == 0xFFFD { continue }
                if s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace { out.append(" "); continue }
                if s.properties.generalCategory == .control || s.properties.generalCategory == .format { continue }
            }
            if chineseChars && Self.isChinese(s.value) {
                out.append(" "); out.append(s); out.append(" ")
                continue
            }
            out.append(s)
        }
        var result = String(out)
        if stripAccents {
            let decomposed = result.decomposedStringWithCanonicalMapping.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
            result = String(String.UnicodeScalarView(decomposed))
        }
        if lowercase { result = result.lowercased() }
        return result
    }

    func words(_ text: String) -> [String] {
        var out: [String] = []
        var current = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s.properties.isWhitespace {
                if !current.isEmpty { out.append(String(current)); current = .init() }
            } else if Self.isPunctuation(s) {
                if !current.isEmpty { out.append(String(current)); current = .init() }
                out.append(String(s))
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { out.append(String(current)) }
        return out
    }

    func wordPiece(_ word: String, into ids: inout [Int]) {
        let chars = Array(word.unicodeScalars)
        if chars.count > maxChars { ids.append(unk); return }
        var pieces: [Int] = []
        var start = 0
        while start < chars.count {
            var end = chars.count
            var found: Int?
            while start < end {
                var piece = String(String.UnicodeScalarView(chars[start..<end]))
                if start > 0 { piece = prefix + piece }
                if let id = vocab[piece] { found = id; break }
                end -= 1
            }
            guard let id = found else { ids.append(unk); return }
            pieces.append(id)
            start = end
        }
        ids += pieces
    }

    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids = addSpecialTokens ? before : []
        var rest = text[...]
        // Added tokens are matched on the raw text and kept whole.
        while !rest.isEmpty {
            var next: (String.Index, (content: String, id: Int, special: Bool))?
            for t in added {
                if let r = rest.range(of: t.content), next == nil || r.lowerBound < next!.0 { next = (r.lowerBound, t) }
            }
            let end = next?.0 ?? rest.endIndex
            for w in words(normalize(rest[rest.startIndex..<end])) { wordPiece(w, into: &ids) }
            guard let (at, token) = next else { break }
            ids.append(token.id)
            rest = rest[rest.index(at, offsetBy: token.content.count)...]
        }
        if addSpecialTokens { ids += after }
        return ids
    }

    /// The special tokens the post-processor puts around one sequence ([CLS] … [SEP] for BERT).
    public var specialTokensAdded: Int { before.count + after.count }

    /// Ids with the special tokens, at most `maxLength` of them, as `tokenizers` truncates one
    /// sequence (what transformers' `truncation=True, max_length=` asks): the text's tokens are cut
    /// on the right to leave room for the special tokens, which are then added. `truncated`: some were cut.
    public func encode(_ text: String, maxLength: Int) -> (ids: [Int], truncated: Bool) {
        precondition(maxLength >= specialTokensAdded, "max length \(maxLength) leaves no room for the \(specialTokensAdded) special tokens")
        let body = encode(text, addSpecialTokens: false), room = maxLength - specialTokensAdded
        return (before + body.prefix(room) + after, body.count > room)
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var out = ""
        for id in ids {
            guard let t = tokens[id] else { continue }
            if skipSpecialTokens && specialIds.contains(id) { continue }
            if t.hasPrefix(prefix) { out += t.dropFirst(prefix.count) } else { out += (out.isEmpty ? "" : " ") + t }
        }
        return out
    }
}
