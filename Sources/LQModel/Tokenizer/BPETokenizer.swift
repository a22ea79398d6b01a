import Foundation

/// BPE as the `tokenizers` library runs it. Byte-level (GPT-2, SmolLM, Llama 3, Qwen2 families):
/// added tokens split out first, then the pre-tokenizer (ByteLevel's GPT-2 regex, optionally after
/// individual Digits or a Split regex), then merges by rank within each pre-token. SentencePiece
/// style (Llama 2, Mistral): spaces become ▁ (a Prepend+Replace normalizer, or a Metaspace
/// pre-tokenizer), characters outside the vocabulary fall back to <0xNN> byte tokens.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    enum PreTokenizer {
        case byteLevel(regex: Bool)
        case digitsThenByteLevel(regex: Bool)
        case splitThenByteLevel(BoundedRegex)
        /// SentencePiece style: ▁ for spaces and a leading ▁ as `prepend` says; `split` cuts before each ▁.
        case metaspace(prepend: MetaspacePrepend, split: Bool)
    }

    enum MetaspacePrepend {
        /// The legacy normalizer (Prepend then Replace): every segment gets a ▁ in front.
        case legacy
        /// Metaspace `always`: a ▁ in front of segments not already starting with one.
        case always
        /// Metaspace `first`: as `always`, but only for text at the very start of the input.
        case first
        case never
    }

    struct AddedToken {
        let content: String
        let id: Int
        let special: Bool
    }

    let path: String
    let vocab: [String: Int]
    /// id → token (ids may leave gaps).
    let tokens: [Int: String]
    public let vocabularySize: Int
    /// (left id, right id) → (rank, merged id)
    let merges: [Int64: (rank: Int, id: Int)]
    let pre: PreTokenizer
    let ignoreMerges: Bool
    let byteFallback: Bool
    let unk: Int?
    /// <0xNN> token ids, for byte fallback.
    let byteTokens: [Int?]
    let added: [AddedToken]
    let specialIds: Set<Int>
    let prefix: [Int], suffix: [Int]
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    public convenience init(path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TokenizerError.unreadable(path: path, detail: "cannot read")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError.unreadable(path: path, detail: "not a JSON object")
        }
        try self.init(json: json, path: path)
    }

    public init(json: [String: Any], path: String) throws {
        self.path = path
        guard let model = json["model"] as? [String: Any] else { throw TokenizerError.unreadable(path: path, detail: "no 'model'") }
        let type = model["type"] as? String ?? "?"
        guard type == "BPE" else { throw TokenizerError.unsupported(path: path, what: "model type '\(type)'") }
        guard let v = model["vocab"] as? [String: Any] else { throw TokenizerError.unreadable(path: path, detail: "no 'model.vocab'") }
        func checked(_ id: Any?, _ token: String) throws -> Int { try checkedTokenID(id, token: token, path: path) }
        var vocab: [String: Int] = [:]
        for (k, id) in v { vocab[k] = try checked(id, k) }

        // Added tokens may lie outside the model vocabulary.
        var added: [AddedToken] = []
        for t in json["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = t["content"] as? String, let rawID = t["id"] else { continue }
            let id = try checked(rawID, content)
            guard !content.isEmpty else { throw TokenizerError.unreadable(path: path, detail: "added token \(id) has empty content") }
            added.append(AddedToken(content: content, id: id, special: t["special"] as? Bool ?? false))
            vocab[content] = id
        }
        self.vocab = vocab
        (tokens, vocabularySize) = tokenTable(vocab)
        self.added = added.sorted { $0.content.count > $1.content.count }
        specialIds = Set(added.filter(\.special).map(\.id))

        var merges: [Int64: (Int, Int)] = [:]
        for (rank, m) in (model["merges"] as? [Any] ?? []).enumerated() {
            let pair: [String]
            if let s = m as? String { pair = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init) }
            else { pair = (m as? [String]) ?? [] }
            guard pair.count == 2, let a = vocab[pair[0]], let b = vocab[pair[1]], let merged = vocab[pair[0] + pair[1]] else {
                throw TokenizerError.unreadable(path: path, detail: "merge \(rank) (\(m)) names tokens not in the vocabulary")
            }
            let key = Int64(a) << 32 | Int64(b)
            if merges[key] == nil { merges[key] = (rank, merged) }
        }
        self.merges = merges
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
        byteFallback = model["byte_fallback"] as? Bool ?? false
        unk = (model["unk_token"] as? String).flatMap { vocab[$0] }
        byteTokens = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] }

        if let normalizer = json["normalizer"] as? [String: Any] {
            // The legacy SentencePiece layout: Prepend("▁") then Replace(" " → "▁"), no pre-tokenizer.
            let parts = normalizer["type"] as? String == "Sequence" ? (normalizer["normalizers"] as? [[String: Any]] ?? []) : [normalizer]
            let isLegacy = parts.count == 2 && parts[0]["type"] as? String == "Prepend" && parts[0]["prepend"] as? String == "▁"
                && parts[1]["type"] as? String == "Replace" && (parts[1]["pattern"] as? [String: Any])?["String"] as? String == " "
                && parts[1]["content"] as? String == "▁"
            guard isLegacy, json["pre_tokenizer"] == nil || json["pre_tokenizer"] is NSNull else {
                throw TokenizerError.unsupported(path: path, what: "normalizer '\(normalizer["type"] as? String ?? "?")'")
            }
            pre = .metaspace(prepend: .legacy, split: false)
        } else {
            pre = try Self.parsePre(json["pre_tokenizer"], path: path)
        }
        (prefix, suffix) = Self.parsePost(json["post_processor"], vocab: vocab)
    }

    static func parsePre(_ value: Any?, path: String) throws -> PreTokenizer {
        guard let p = value as? [String: Any], let type = p["type"] as? String else {
            throw TokenizerError.unsupported(path: path, what: "a byte-level BPE without a pre_tokenizer")
        }
        func regexFlag(_ d: [String: Any]) -> Bool { d["use_regex"] as? Bool ?? true }
        if type == "ByteLevel" { return .byteLevel(regex: regexFlag(p)) }
        if type == "Metaspace", p["replacement"] as? String ?? "▁" == "▁" {
            let scheme = p["prepend_scheme"] as? String ?? ((p["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            let prepend: MetaspacePrepend = scheme == "first" ? .first : (scheme == "never" ? .never : .always)
            return .metaspace(prepend: prepend, split: p["split"] as? Bool ?? true)
        }
        if type == "Sequence", let list = p["pretokenizers"] as? [[String: Any]], list.count == 2,
           let last = list.last, last["type"] as? String == "ByteLevel" {
            let first = list[0]
            if first["type"] as? String == "Digits", first["individual_digits"] as? Bool == true {
                return .digitsThenByteLevel(regex: regexFlag(last))
            }
            if first["type"] as? String == "Split", let pattern = (first["pattern"] as? [String: Any])?["Regex"] as? String,
               first["behavior"] as? String == "Isolated" {
                do { return .splitThenByteLevel(try BoundedRegex(pattern)) } catch {
                    throw TokenizerError.unreadable(path: path, detail: "pre_tokenizer Split: \(error)")
                }
            }
        }
        throw TokenizerError.unsupported(path: path, what: "pre_tokenizer \(type)")
    }

    /// Special tokens a TemplateProcessing post-processor puts around a single sequence.
    static func parsePost(_ value: Any?, vocab: [String: Int]) -> ([Int], [Int]) {
        guard let p = value as? [String: Any] else { return ([], []) }
        let processors = p["type"] as? String == "Sequence" ? (p["processors"] as? [[String: Any]] ?? []) : [p]
        for proc in processors where proc["type"] as? String == "TemplateProcessing" {
            var before: [Int] = [], after: [Int] = []
            var seenSequence = false
            for piece in proc["single"] as? [[String: Any]] ?? [] {
                if piece["Sequence"] != nil { seenSequence = true; continue }
                if let special = piece["SpecialToken"] as? [String: Any], let id = (special["id"] as? String).flatMap({ vocab[$0] }) {
                    if seenSequence { after.append(id) } else { before.append(id) }
                }
            }
            return (before, after)
        }
        return ([], [])
    }

    public func id(of token: String) -> Int? { vocab[token] }

    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        var ids: [Int] = addSpecialTokens ? prefix : []
        for (n, segment) in splitAdded(text).enumerated() {
            switch segment {
            case let .token(id): ids.append(id)
            case let .text(s): try encodeText(s, first: n == 0, into: &ids)
            }
        }
        if addSpecialTokens { ids += suffix }
        return ids
    }

    enum Segment { case text(Substring), token(Int) }

    /// Splits out added tokens (longest first at each position).
    func splitAdded(_ text: String) -> [Segment] {
        if added.isEmpty { return [.text(text[...])] }
        var out: [Segment] = []
        var start = text.startIndex, i = text.startIndex
        while i < text.endIndex {
            if let t = added.first(where: { text[i...].hasPrefix($0.content) }) {
                if start < i { out.append(.text(text[start..<i])) }
                out.append(.token(t.id))
                i = text.index(i, offsetBy: t.content.count)
                start = i
            } else {
                i = text.index(after: i)
            }
        }
        if start < text.endIndex { out.append(.text(text[start..<text.endIndex])) }
        return out
    }

    func encodeText(_ text: Substring, first: Bool, into ids: inout [Int]) throws {
        let scalars = text.unicodeScalars
        func byteLevel(_ piece: Substring.UnicodeScalarView, regex: Bool) {
            if regex {
                for r in ByteLevel.split(piece) { encodeWord(ByteLevel.encode(piece[r]), into: &ids) }
            } else {
                encodeWord(ByteLevel.encode(piece), into: &ids)
            }
        }
        switch pre {
        case let .byteLevel(regex):
            byteLevel(scalars, regex: regex)
        case let .digitsThenByteLevel(regex):
            var start = scalars.startIndex, i = start
            while i < scalars.endIndex {
                if ByteLevel.isNumber(scalars[i]) {
                    if start < i { byteLevel(scalars[start..<i], regex: regex) }
                    let j = scalars.index(after: i)
                    byteLevel(scalars[i..<j], regex: regex)
                    start = j
                    i = j
                } else {
                    i = scalars.index(after: i)
                }
            }
            if start < scalars.endIndex { byteLevel(scalars[start..<scalars.endIndex], regex: regex) }
        case let .metaspace(prepend, split):
            var s = String(text)
            switch prepend {
            case .legacy:
                if !s.isEmpty { s = "▁" + s }
                s = s.replacingOccurrences(of: " ", with: "▁")
            case .always, .first, .never:
                s = s.replacingOccurrences(of: " ", with: "▁")
                let wanted = prepend == .always || (prepend == .first && first)
                if wanted && !s.isEmpty && !s.hasPrefix("▁") { s = "▁" + s }
            }
            if split {
                var word = ""
                for ch in s {
                    if ch == "▁" && !word.isEmpty { encodePiece(word, into: &ids); word = "" }
                    word.append(ch)
                }
                if !word.isEmpty { encodePiece(word, into: &ids) }
            } else {
                encodePiece(s, into: &ids)
            }
        case let .splitThenByteLevel(regex):
            // Isolated: each match is a piece, and so is each stretch between matches.
            let utf16 = Array(text.utf16)
            let matches: [Range<Int>?]
            do { matches = try regex.matches(utf16: utf16) } catch { throw TokenizerError.unreadable(path: path, detail: "pre_tokenizer Split: \(error)") }
            func piece(_ r: Range<Int>) {
                if !r.isEmpty { encodeWord(ByteLevel.encode(String(decoding: utf16[r], as: UTF16.self)[...].unicodeScalars), into: &ids) }
            }
            var last = 0
            for case let m? in matches {
                piece(last..<m.lowerBound)
                piece(m)
                last = m.upperBound
            }
            piece(last..<utf16.count)
        }
    }

    /// BPE on one SentencePiece-style piece: characters, or their UTF-8 bytes as <0xNN> tokens
    /// when the vocabulary lacks them (runs of unknowns fused into one unk without byte fallback).
    func encodePiece(_ piece: String, into ids: inout [Int]) {
        var symbols: [Int] = []
        for ch in piece {
            if let id = vocab[String(ch)] {
                symbols.append(id)
            } else if byteFallback, String(ch).utf8.allSatisfy({ byteTokens[Int($0)] != nil }) {
                symbols += String(ch).utf8.map { byteTokens[Int($0)]! }
            } else if let unk {
                if symbols.last != unk { symbols.append(unk) }
            }
        }
        ids += MergeQueue.apply(symbols, merges: merges)
    }

    /// BPE on one pre-token (already in byte-level characters).
    func encodeWord(_ word: String, into ids: inout [Int]) {
        lock.lock()
        if let cached = cache[word] { lock.unlock(); ids += cached; return }
        lock.unlock()
        var result: [Int]
        if ignoreMerges, let whole = vocab[word] {
            result = [whole]
        } else {
            // A character outside the vocabulary becomes the unk token, or is dropped without one, as
            // tokenizers' BPE does (a byte-level vocabulary normally holds all 256).
            var symbols: [Int] = []
            for c in word.unicodeScalars {
                if let id = vocab[String(c)] { symbols.append(id) } else if let unk { symbols.append(unk) }
            }
            result = MergeQueue.apply(symbols, merges: merges)
        }
        lock.lock()
        if cache.count < 200_000 { cache[word] = result }
        lock.unlock()
        ids += result
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        if case .metaspace = pre { return decodeMetaspace(ids, skipSpecialTokens: skipSpecialTokens) }
        var bytes: [UInt8] = []
        for id in ids {
            guard let token = tokens[id] else { continue }
            if specialIds.contains(id) {
                if !skipSpecialTokens { bytes += Array(token.utf8) }
                continue
            }
            if added.contains(where: { $0.id == id }) { bytes += Array(token.utf8); continue }
            for s in token.unicodeScalars {
                if let b = ByteLevel.scalarToByte[s.value] { bytes.append(b) } else { bytes += Array(String(s).utf8) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// SentencePiece decoding: ▁ → space, <0xNN> → bytes, then the leading space dropped.
    func decodeMetaspace(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        let byteIndex = Dictionary(uniqueKeysWithValues: byteTokens.enumerated().compactMap { b, id in id.map { ($0, UInt8(b)) } })
        for id in ids {
            guard let token = tokens[id] else { continue }
            if specialIds.contains(id) && byteIndex[id] == nil {
                if !skipSpecialTokens { bytes += Array(token.utf8) }
                continue
            }
            if let b = byteIndex[id] { bytes.append(b); continue }
            bytes += Array(token.replacingOccurrences(of: "▁", with: " ").utf8)
        }
        if bytes.first == 0x20 { bytes.removeFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
