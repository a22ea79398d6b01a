import Foundation
import LQFormats
import LQModel
import LQTrain
import Testing

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// A GGUF file's bytes with fields overwritten where their names are found.
struct GGUFBytes {
    var bytes: [UInt8]

    init(seed: String) { bytes = Array(try! Data(contentsOf: URL(fileURLWithPath: fuzzFixtures + "/gguf/" + seed))) }
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func find(_ pattern: [UInt8]) -> Int {
        for i in 0...(bytes.count - pattern.count) where Array(bytes[i..<(i + pattern.count)]) == pattern { return i }
        preconditionFailure("pattern not found")
    }
    func named(_ s: String) -> Int { let p = le(UInt64(s.utf8.count)) + Array(s.utf8); return find(p) + p.count }
    mutating func write(_ value: [UInt8], at offset: Int) { bytes.replaceSubrange(offset..<(offset + value.count), with: value) }
    /// A metadata value (after its key and type).
    mutating func set(_ key: String, _ value: [UInt8], skip: Int = 0) { write(value, at: named(key) + 4 + skip) }
    /// A tensor description's field: n_dims at 0, dimension i at 4 + 8i, then type and offset.
    mutating func setTensor(_ name: String, at field: Int, _ value: [UInt8]) { write(value, at: named(name) + field) }

    func file(in dir: String, _ name: String) throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A file of the given metadata entries (key, type, value bytes) and no tensors.
    static func header(tensorCount: UInt64 = 0, kv: [(String, UInt32, [UInt8])], kvCount: UInt64? = nil) -> GGUFBytes {
        var b = Array("GGUF".utf8) + le(UInt32(3)) + le(tensorCount) + le(kvCount ?? UInt64(kv.count))
        for (k, t, v) in kv { b += le(UInt64(k.utf8.count)) + Array(k.utf8) + le(t) + v }
        return GGUFBytes(b + [UInt8](repeating: 0, count: 64))
    }
}

/// Each example of issue 22's "Crashes and hangs found" (and each class around it) as a file that
/// is refused with its named error, where it used to trap, allocate without bound or convert.
struct HostileGGUFTests {
    /// Converts as lqlora convert does, in memory; the first error, if any.
    func convert(_ path: String) -> String? {
        do {
            let converter = GGUFConverter(gguf: try GGUFFile(path: path))
            _ = try converter.config(dtype: .bf16)
            _ = try converter.tokenizerJSON()
            for t in try converter.tensors(dtype: .f32) {
                var raw = [UInt8](repeating: 0, count: t.byteCount)
                try raw.withUnsafeMutableBytes { try t.fill($0) }
            }
            return nil
        } catch { return "\(error)" }
    }

    @Test func headerIntegersAreCheckedBeforeAnythingIsAllocated() throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        let seed = GGUFBytes(seed: "seed-llama-bpe.gguf")
        #expect(convert(try seed.file(in: scratch.path, "ok.gguf")) == nil)
        let embd = "token_embd.weight"
        var cases: [(String, (inout GGUFBytes) -> Void, GGUFError)] = []
        func add(_ name: String, _ edit: @escaping (inout GGUFBytes) -> Void, _ error: @escaping (String) -> GGUFError) {
            cases.append((name, edit, error(scratch.path + "/" + name)))
        }
        add("dims-2-62.gguf", { $0.setTensor(embd, at: 4, le(UInt64(1) << 62)) }, { .sizeOverflow(path: $0, tensor: embd) })
        add("bytes-2-63.gguf", { $0.setTensor(embd, at: 4, le(UInt64(1) << 62)); $0.setTensor(embd, at: 12, le(UInt64(1))) },
            { .sizeOverflow(path: $0, tensor: embd) })
        add("dim-2-63.gguf", { $0.setTensor(embd, at: 4, le(UInt64(1) << 63)) },
            { .badDimensions(path: $0, tensor: embd, detail: "has dimension 0 of 9223372036854775808, above 2^63 - 1") })
        add("ndims-2-31.gguf", { $0.setTensor(embd, at: 0, le(UInt32(1) << 31)) },
            { .badDimensions(path: $0, tensor: embd, detail: "has 2147483648 dimensions (GGUF allows at most 4)") })
        add("offset-2-63.gguf", { $0.setTensor("output_norm.weight", at: 4 + 8 + 4, le(UInt64(1) << 63)) },
            { .tensorOutOfBounds(path: $0, tensor: "output_norm.weight") })
        add("unaligned.gguf", { $0.setTensor("output_norm.weight", at: 4 + 8 + 4, le(UInt64(257))) },
            { .misaligned(path: $0, tensor: "output_norm.weight", offset: 257, alignment: 32) })
        add("overlapping.gguf", { $0.setTensor("output_norm.weight", at: 4 + 8 + 4, le(UInt64(0))) },
            { .overlapping(path: $0, tensor: embd, other: "output_norm.weight") })
        add("rows-not-blocks.gguf", { $0.setTensor("blk.0.ffn_down.weight", at: 4, le(UInt64(16))) },
            { .notWholeBlocks(path: $0, tensor: "blk.0.ffn_down.weight", rowLength: 16, blockSize: 32) })
        add("tokens-2-62.gguf", { $0.set("tokenizer.ggml.tokens", le(UInt64(1) << 62), skip: 4) }, {
            .countTooLarge(path: $0, what: "the length of metadata 'tokenizer.ggml.tokens'", count: 1 << 62, limit: 496)
        })
        add("tensor-count-0.gguf", { $0.write(le(UInt64(0)), at: 8) }, { .noTensors(path: $0) })
        add("block-count-0.gguf", { $0.set("llama.block_count", le(UInt32(0))) },
            { .badMetadata(path: $0, key: "llama.block_count", detail: "must be a positive integer, not 0") })
        add("block-count-2-40.gguf", { $0.set("llama.block_count", le(UInt32(1) << 30)) },
            { .badMetadata(path: $0, key: "llama.block_count", detail: "is 1073741824, but the file holds 11 tensors (each layer needs 9)") })
        add("block-count-2.gguf", { $0.set("llama.block_count", le(UInt32(2))) },
            { .badMetadata(path: $0, key: "llama.block_count", detail: "is 2, but the file holds 11 tensors (each layer needs 9)") })
        // The last tensor's description left out: the layer misses its down projection.
        add("missing-tensor.gguf", { $0.write(le(UInt64(10)), at: 8) }, { .tensorNotFound(path: $0, tensor: "blk.0.ffn_down.weight") })
        add("heads-0.gguf", { $0.set("llama.attention.head_count", le(UInt32(0))) },
            { .badMetadata(path: $0, key: "llama.attention.head_count", detail: "must be a positive integer, not 0") })
        add("kv-heads-3.gguf", { $0.set("llama.attention.head_count_kv", le(UInt32(3))) },
            { .badMetadata(path: $0, key: "llama.attention.head_count_kv", detail: "(3) does not divide llama.attention.head_count (2)") })
        add("embedding-9.gguf", { $0.set("llama.embedding_length", le(UInt32(9))) },
            { .badMetadata(path: $0, key: "llama.embedding_length", detail: "(9) is not a multiple of llama.attention.head_count (2)") })
        add("no-block-count.gguf", { $0.write(Array("llama.block_cXunt".utf8), at: $0.named("llama.block_count") - 17) },
            { .missingKey(path: $0, key: "llama.block_count") })
        add("eps-negative.gguf", { $0.set("llama.attention.layer_norm_rms_epsilon", le(Float(-1).bitPattern)) },
            { .badMetadata(path: $0, key: "llama.attention.layer_norm_rms_epsilon", detail: "must be a positive finite number, not -1.0") })
        add("rope-0.gguf", { $0.set("llama.rope.freq_base", le(Float(0).bitPattern)) },
            { .badMetadata(path: $0, key: "llama.rope.freq_base", detail: "must be a positive finite number, not 0.0") })
        add("shape.gguf", { $0.setTensor("blk.0.ffn_gate.weight", at: 12, le(UInt64(16))) },
            { .badTensorShape(path: $0, tensor: "blk.0.ffn_gate.weight", expected: [32, 8], actual: [16, 8]) })
        add("bos-99.gguf", { $0.set("tokenizer.ggml.bos_token_id", le(UInt32(99))) },
            { .badMetadata(path: $0, key: "tokenizer.ggml.bos_token_id", detail: "is 99, outside the vocabulary of 16 tokens") })
        add("merge-unknown.gguf", { $0.write(Array("h x".utf8), at: $0.find(Array("h e".utf8))) },
            { .badTokenizer(path: $0, detail: "tokenizer.ggml: merge 3 (h x) names tokens not in the vocabulary") })
        for (name, edit, error) in cases {
            var b = seed
            edit(&b)
            let got = convert(try b.file(in: scratch.path, name))
            #expect(got == error.description, "\(name)")
        }
    }

    @Test func headerCountsAlignmentAndDuplicatesAreNamed() throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        func read(_ b: GGUFBytes, _ name: String) throws -> String? {
            let path = try b.file(in: scratch.path, name)
            do { _ = try GGUFFile(path: path); return nil } catch { return "\(error)".replacingOccurrences(of: scratch.path + "/", with: "") }
        }
        let u32: UInt32 = 4, str: UInt32 = 8, arr: UInt32 = 9
        #expect(try read(.header(kv: [("general.alignment", u32, le(UInt32(0)))]), "a0.gguf")
            == "a0.gguf: general.alignment is 0, not a power of two from 1 to 2^31")
        #expect(try read(.header(kv: [("general.alignment", u32, le(UInt32(48)))]), "a48.gguf")
            == "a48.gguf: general.alignment is 48, not a power of two from 1 to 2^31")
        #expect(try read(.header(kv: [("general.alignment", str, le(UInt64(1)) + [0x41])]), "as.gguf")
            == "as.gguf: general.alignment is \"A\", not an integer")
        #expect(try read(.header(kv: [], kvCount: UInt64.max), "kv.gguf")
            == "kv.gguf: the metadata entry count is 18446744073709551615, more than the 4 that the rest of the file can hold")
        #expect(try read(.header(tensorCount: 1 << 63, kv: []), "t.gguf")
            == "t.gguf: the tensor count is 9223372036854775808, more than the 2 that the rest of the file can hold")
        #expect(try read(.header(kv: [("k", str, le(UInt64(1) << 40))]), "s.gguf")
            == "s.gguf: file ends early (at byte 45) inside metadata 'k' (a string of 1099511627776 bytes)")
        #expect(try read(.header(kv: [("k", arr, le(UInt32(10)) + le(UInt64(1) << 61))]), "arr.gguf")
            == "arr.gguf: the length of metadata 'k' is 2305843009213693952, more than the 8 that the rest of the file can hold")
        let nested = [UInt8]((0..<6).flatMap { _ in le(arr) + le(UInt64(1)) })
        #expect(try read(.header(kv: [("deep", arr, nested)]), "deep.gguf")
            == "deep.gguf: metadata 'deep' nests arrays more than 4 deep")
        #expect(try read(.header(kv: [("k", 13, [])]), "type.gguf") == "type.gguf: metadata 'k' has unknown value type 13")
        #expect(try read(.header(kv: [("k", u32, le(UInt32(1))), ("k", u32, le(UInt32(2)))]), "dup.gguf")
            == "dup.gguf: metadata key 'k' is given twice")
        var two = GGUFBytes(Array(GGUFBytes.header(tensorCount: 2, kv: []).bytes.prefix(24)))
        for _ in 0..<2 { two.bytes += le(UInt64(1)) + Array("w".utf8) + le(UInt32(1)) + le(UInt64(4)) + le(UInt32(0)) + le(UInt64(0)) }
        two.bytes += [UInt8](repeating: 0, count: 64)
        #expect(try read(two, "dupt.gguf") == "dupt.gguf: tensor 'w' is given twice")
    }
}

struct HostileTokenizerTests {
    func load(_ json: String, modelVocabulary: Int = 1 << 16) throws -> any Tokenizer {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        try Data(json.utf8).write(to: URL(fileURLWithPath: scratch.path + "/tokenizer.json"))
        return try loadTokenizer(directory: scratch.path, modelVocabularySize: modelVocabulary)
    }
    func bpe(_ vocab: String, added: String = "[]", merges: String = "[]") -> String {
        #"{"added_tokens": \#(added), "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": \#(vocab), "merges": \#(merges)}}"#
    }

    @Test func idsAreExactIntegersInsideTheTable() throws {
        for (vocab, named) in [(#"{"a": 1.5}"#, #"token "a" has id 1.5"#), (#"{"a": true}"#, #"token "a" has id 1"#),
                               (#"{"a": -1}"#, #"token "a" has id -1"#), (#"{"a": 1e30}"#, #"token "a" has id 1e+30"#)] {
            #expect { try load(bpe(vocab)) } throws: { "\($0)".contains(named) }
        }
        #expect { try load(bpe(#"{"a": 0}"#, merges: #"["a b"]"#)) } throws: { "\($0)".hasSuffix("merge 0 (a b) names tokens not in the vocabulary") }
    }

    /// A large id no longer sizes the table (it took 268 MB at 2^24 − 1); the model's vocabulary refuses it.
    @Test func aLargeIdIsRefusedByTheModelsVocabulary() throws {
        let start = Date()
        let t = try load(bpe(#"{"a": 0, "b": 16777215}"#), modelVocabulary: 1 << 24)
        #expect(t.vocabularySize == 1 << 24 && Date().timeIntervalSince(start) < 1)
        #expect(t.decode([1, 16777215, -5, 0], skipSpecialTokens: false) == "ba")
        #expect { try load(bpe(#"{"a": 0, "b": 70}"#), modelVocabulary: 64) } throws: {
            "\($0)".hasSuffix("tokenizer.json has ids up to 70, but config.json's vocab_size is 64: ids from 64 on have no embedding")
        }
    }

    /// Added tokens that are prefixes of one another, at the end of the text, in decomposed characters: encoding ends.
    @Test func addedTokensAlwaysAdvance() throws {
        let t = try load(bpe(#"{"a": 0, "e": 1, "é": 2}"#, added: #"[{"id": 3, "content": "e", "special": true}, {"id": 4, "content": "ee", "special": false}]"#))
        #expect(try t.encode("eee\u{301}e", addSpecialTokens: false).count >= 2)
        let wp = #"{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "e": 1}}, "added_tokens": [{"id": 2, "content": "e", "special": true}]}"#
        let w = try load(wp)
        #expect(try w.encode("e\u{301}e e", addSpecialTokens: false).count >= 2)
    }
}

struct HostileYAMLTests {
    func refusal(_ yaml: String) -> String? {
        do { _ = try TrainConfig(yaml: yaml); return nil } catch { return "\(error)" }
    }
    static let base = "model: m\noutput_dir: o\ndata:\n  train: t.jsonl\ntrain:\n  max_steps: 2\n"

    @Test func billionLaughsAndDeepNestingAreRefusedBeforeTheyAreBuilt() throws {
        var laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<10 { laughs += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let start = Date()
        #expect(refusal(laughs)?.hasPrefix("config: expands to more than 100000 values through its aliases") == true, "\(refusal(laughs) ?? "")")
        #expect(Date().timeIntervalSince(start) < 2)
        #expect(refusal(Self.base + "lora:\n  targets: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n")
            == "config: nests more than 32 levels deep (line 8)")
        #expect(refusal(String(repeating: "- ", count: 100_000) + "x\n")?.hasPrefix("config: nests more than 32 levels deep") == true)
        #expect(refusal(String(repeating: "{a: ", count: 100_000))?.hasPrefix("config: nests more than 32 levels deep") == true)
        // Anchors and aliases within the limit still read.
        #expect(refusal("model: &m m\noutput_dir: *m\ndata: {train: t}\ntrain: {max_steps: 1}\n") == nil)
        var flow = "[&a0 [x, x, x, x, x, x, x, x, x, x]"
        for i in 1..<10 { flow += ", &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]" }
        #expect { try TrainConfig(yaml: Self.base, overrides: ["train.seed=" + flow + "]"]) } throws: {
            "\($0)".hasPrefix("--set train.seed: expands to more than 100000 values")
        }
    }

    @Test func hugeNumbersAndWrongTypesAreNamed() throws {
        for (yaml, error) in [
            ("train:\n  max_steps: 2\n  seed: 1e400\n", "'train.seed' must be an integer"),
            ("train:\n  max_steps: 99999999999999999999999\n", "'train.max_steps' must be an integer"),
            ("train:\n  max_steps: 2\n  lr: .nan\n", "'train.lr' must be"),
            ("train: [1, 2]\n", "'train' must be a mapping"),
            ("train:\n  max_steps: {a: 1}\n", "'train.max_steps' must be an integer"),
            ("lora:\n  targets: [[q_proj]]\ntrain: {max_steps: 1}\n", "'lora.targets' has '[\"q_proj\"]', not one of"),
        ] {
            let got = refusal("model: m\noutput_dir: o\ndata:\n  train: t.jsonl\n" + yaml) ?? "accepted"
            #expect(got.hasPrefix(error), "\(yaml): \(got)")
        }
        let longKey = String(repeating: "k", count: 1_000_000)
        let start = Date()
        #expect(refusal(Self.base + "? " + longKey + "\n: 1\n") == "unknown key '\(longKey)'")
        #expect(Date().timeIntervalSince(start) < 2)
    }
}

struct DuplicateTensorTests {
    /// Last wins, as the safetensors library does, and the duplicate is named.
    @Test func theLastEntryIsUsedAndNamed() throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        var header = Array(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        let bytes = le(UInt64(header.count)) + header + le(Float(1).bitPattern) + le(Float(2).bitPattern)
        let path = scratch.path + "/dup.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let file = try SafeTensorsFile(path: path)
        #expect(file.duplicateNames == ["a"])
        #expect(try file.floatTensor("a").array == [2] && file.floatTensor("b").array == [1])
    }
}

/// Patterns from files run on ICU's engine with a step limit (BoundedRegex): the same matches as
/// NSRegularExpression, which wraps the same engine without the limit.
struct BacktrackingPatternTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// Nested quantifiers over letters with no digit after them: 2^n ways to fail.
    static let runaway = #"(\p{L}+)+[0-9]|\s+"#
    static let victim = String(repeating: "ab", count: 40)

    @Test func aRunawayPatternIsStoppedNotHung() throws {
        let regex = try BoundedRegex(Self.runaway)
        #expect(throws: BoundedRegex.Failure.timedOut(pattern: Self.runaway, reason: "U_REGEX_TIME_OUT")) { try regex.matches(in: Self.victim) }
        #expect(try regex.matches(in: "ab1 \t") == ["ab1", " \t"])
        #expect(throws: BoundedRegex.Failure.invalid(pattern: "([a-z]", reason: "U_REGEX_MISMATCHED_PAREN", offset: 6)) { try BoundedRegex("([a-z]") }
    }

    /// The Llama 3 pre-tokenizer pattern over WikiText-2's lines: every match where NSRegularExpression puts it.
    @Test func matchesAreNSRegularExpressions() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.repository + "/Tests/LQModelTests/Fixtures/tokenizers/llama3.json"))) as! [String: Any]
        let split = ((json["pre_tokenizer"] as! [String: Any])["pretokenizers"] as! [[String: Any]])[0]
        let pattern = (split["pattern"] as! [String: Any])["Regex"] as! String
        let bounded = try BoundedRegex(pattern), foundation = try NSRegularExpression(pattern: pattern)
        let text = try String(contentsOfFile: Self.repository + "/data/wikitext-2-raw-test.txt", encoding: .utf8)
        var compared = 0
        for line in text.split(separator: "\n").prefix(2_000) + ["日本語 🙂 e\u{301} 12345 'S"] {
            let s = String(line), ns = s as NSString
            let expected = foundation.matches(in: s, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range) }
            #expect(try bounded.matches(in: s) == expected, "\(s.prefix(80))")
            compared += expected.count
        }
        #expect(compared > 100_000)
    }

    /// A tokenizer.json whose Split pattern runs away: the text that triggers it is refused naming the file.
    @Test func aTokenizerWithARunawaySplitRefusesTheTextNotHangs() throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: fuzzFixtures + "/tokenizer/regress-runaway-split.json"))
        try bytes.write(to: URL(fileURLWithPath: scratch.path + "/tokenizer.json"))
        let tokenizer = try loadTokenizer(directory: scratch.path, modelVocabularySize: 1 << 16)
        #expect(try tokenizer.encode("Hello world", addSpecialTokens: false).count > 0)
        #expect { try tokenizer.encode(Self.victim, addSpecialTokens: false) } throws: {
            "\($0)" == scratch.path + "/tokenizer.json: pre_tokenizer Split: regular expression \(String(reflecting: Self.runaway)) backtracks without bound on this text (U_REGEX_TIME_OUT); it was stopped"
        }
        var json = try JSONSerialization.jsonObject(with: bytes) as! [String: Any]
        var pre = json["pre_tokenizer"] as! [String: Any], list = pre["pretokenizers"] as! [[String: Any]]
        list[0]["pattern"] = ["Regex": "(\\p{L}"]
        pre["pretokenizers"] = list
        json["pre_tokenizer"] = pre
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: scratch.path + "/tokenizer.json"))
        #expect { try loadTokenizer(directory: scratch.path, modelVocabularySize: 1 << 16) } throws: {
            "\($0)".hasSuffix("tokenizer.json: pre_tokenizer Split: regular expression \"(\\\\p{L}\" does not compile (U_REGEX_MISMATCHED_PAREN at offset 6)")
        }
    }

    /// `eval --task cot-faithfulness --answer-regex` with a runaway pattern: the answer is refused, not awaited.
    @Test func aRunawayAnswerPatternIsStopped() throws {
        let item = ReasoningItem(at: "t:1", question: "q", gold: "5", kind: .number)
        #expect(throws: BoundedRegex.Failure.self) { try item.answer(in: Self.victim, extractor: .pattern(Self.runaway)) }
    }
}
