import Foundation
import LQModel
import LQTestSupport
import Testing

/// Byte-level BPE against huggingface/tokenizers (scripts/make-tokenizer-fixtures.py).
struct TokenizerTests {
    struct Expected: Decodable {
        let texts: [String]
        let ids: [String: [[Int]]]
    }
    static let dir = modelFixtures + "/tokenizers"
    static let expected = try! JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expected.json")))

    @Test(arguments: ["gpt2", "smollm", "llama3", "sentencepiece_legacy", "sentencepiece_metaspace"])
    func idsMatchTheTokenizersLibrary(variant: String) throws {
        let tok = try BPETokenizer(path: Self.dir + "/\(variant).json")
        #expect(Self.expected.ids[variant]!.count == Self.expected.texts.count)
        for (text, ids) in zip(Self.expected.texts, Self.expected.ids[variant]!) {
            #expect(try tok.encode(text, addSpecialTokens: true) == ids, "\(variant): \(text.debugDescription)")
            // Metaspace's decoder drops the first space, which a text starting with spaces cannot survive.
            if variant != "sentencepiece_metaspace" || !text.hasPrefix(" ") {
                #expect(try tok.decode(tok.encode(text, addSpecialTokens: false)) == text, "\(variant) round trip: \(text.debugDescription)")
            }
        }
    }

    static let smolLM2 = RealModel.smolLM2

    @Test(.enabled(if: RealModel.enabled(smolLM2), "SmolLM2 not converted: run scripts/fetch-smollm2.sh"))
    func smolLM2TokenizerMatches() throws {
        let tok = try loadTokenizer(directory: Self.smolLM2)
        #expect(tok.vocabularySize == 49152)
        #expect(Self.expected.ids["smollm2"]!.count == Self.expected.texts.count)
        for (text, ids) in zip(Self.expected.texts, Self.expected.ids["smollm2"]!) {
            #expect(try tok.encode(text, addSpecialTokens: true) == ids, "\(text.debugDescription)")
            #expect(tok.decode(ids, skipSpecialTokens: false) == text)
        }
    }

    @Test func unsupportedTokenizersAreNamed() throws {
        let json: [String: Any] = ["model": ["type": "Unigram", "vocab": [:]]]
        #expect(throws: TokenizerError.unsupported(path: "t.json", what: "model type 'Unigram'")) {
            try BPETokenizer(json: json, path: "t.json")
        }
    }
}

/// BERT WordPiece (all-MiniLM-L6-v2's tokenizer.json) against huggingface/tokenizers.
struct WordPieceTests {
    static let miniLM = RealModel.miniLM

    @Test(.enabled(if: RealModel.enabled(miniLM), "all-MiniLM-L6-v2 not fetched: run scripts/fetch-minilm.sh"))
    func idsMatchTheTokenizersLibrary() throws {
        let tok = try loadTokenizer(directory: Self.miniLM)
        #expect(tok is WordPieceTokenizer)
        #expect(TokenizerTests.expected.ids["minilm"]!.count == TokenizerTests.expected.texts.count)
        for (text, ids) in zip(TokenizerTests.expected.texts, TokenizerTests.expected.ids["minilm"]!) {
            #expect(try tok.encode(text, addSpecialTokens: true) == ids, "\(text.debugDescription)")
        }
    }
}

/// Chat formatting against transformers' apply_chat_template on SmolLM2's template.
struct ChatTemplateTests {
    struct Fixture: Decodable {
        struct Case: Decodable { let messages: [[String: String]]; let expected: String }
        let template: String
        let cases: [Case]
    }

    @Test func chatMLMatchesTransformers() throws {
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: modelFixtures + "/chatml-smollm2.json")))
        let template = try ChatTemplate(template: f.template)
        #expect(template == .chatML(defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        for c in f.cases {
            let messages = c.messages.map { ChatTemplate.Message(role: $0["role"]!, content: $0["content"]!) }
            #expect(try template.render(messages) == c.expected)
        }
        #expect(throws: ModelError.self) { try ChatTemplate(template: "{{ messages }}") }
    }
}

/// tokenizer.json files that would trap, allocate without bound or loop forever are refused by name.
struct HostileTokenizerTests {
    func load(_ json: String) throws -> BPETokenizer {
        let path = NSTemporaryDirectory() + "lqlora-tok-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        return try BPETokenizer(path: path)
    }

    static func tokenizer(vocab: String, added: String = "[]") -> String {
        #"{"model": {"type": "BPE", "vocab": \#(vocab), "merges": []}, "added_tokens": \#(added), "pre_tokenizer": {"type": "ByteLevel"}}"#
    }

    @Test func idsOutsideTheTableAndEmptyTokensAreRefused() throws {
        for (json, named) in [(Self.tokenizer(vocab: #"{"a": -1}"#), #"token "a" has id -1"#),
                              (Self.tokenizer(vocab: #"{"a": 1000000000}"#), #"token "a" has id 1000000000"#),
                              (Self.tokenizer(vocab: #"{"a": 0}"#, added: #"[{"id": 1, "content": "", "special": true}]"#), "added token 1 has empty content")] {
            #expect { try load(json) } throws: { "\($0)".contains(named) }
        }
        _ = try load(Self.tokenizer(vocab: #"{"a": 0, "b": 1}"#))
    }

    /// The same refusals for WordPiece (BERT's tokenizer.json), which took any id.
    @Test func wordPieceIdsOutsideTheTableAndEmptyTokensAreRefused() throws {
        func wordPiece(_ vocab: String, added: String = "[]") -> [String: Any] {
            try! JSONSerialization.jsonObject(with: Data(#"{"model": {"type": "WordPiece", "vocab": \#(vocab), "unk_token": "[UNK]"}, "added_tokens": \#(added)}"#.utf8)) as! [String: Any]
        }
        for (json, named) in [(wordPiece(#"{"[UNK]": 0, "a": -1}"#), #"token "a" has id -1"#),
                              (wordPiece(#"{"[UNK]": 0, "a": 1000000000}"#), #"token "a" has id 1000000000"#),
                              (wordPiece(#"{"[UNK]": 0}"#, added: #"[{"id": 1, "content": "", "special": true}]"#), "added token 1 has empty content")] {
            #expect { try WordPieceTokenizer(json: json, path: "tokenizer.json") } throws: { "\($0)" == "tokenizer.json: \(named)" || "\($0)".hasPrefix("tokenizer.json: " + named) }
        }
    }
}
