import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// The BERT encoder and sentence embeddings against sentence-transformers 6.2 itself
/// (scripts/make-embedding-fixtures.py): a tiny random BertModel committed with its tokenizer, and
/// all-MiniLM-L6-v2 where it is fetched.
struct EncoderTests {
    static let dir = modelFixtures + "/embeddings"
    static let tiny = dir + "/tiny-bert"

    static func oracle(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) as! [String: Any]
    }

    static func rows(_ value: Any?) -> [[Float]] { (value as! [[NSNumber]]).map { $0.map(\.floatValue) } }

    /// The largest 1 − cos and |Δ| between the rows of `got` [n, d] and `expected`.
    static func compare(_ got: Tensor, _ expected: [[Float]]) -> (cosine: Double, abs: Float) {
        precondition(got.shape == [expected.count, expected.first?.count ?? 0], "shape \(got.shape) against \(expected.count) rows")
        var worstCosine = 0.0, worstAbs: Float = 0
        for (i, e) in expected.enumerated() {
            var dot = 0.0, gg = 0.0, ee = 0.0
            for (j, x) in e.enumerated() {
                let g = got[i, j]
                dot += Double(g) * Double(x); gg += Double(g) * Double(g); ee += Double(x) * Double(x)
                worstAbs = max(worstAbs, abs(g - x))
            }
            worstCosine = max(worstCosine, 1 - dot / (gg * ee).squareRoot())
        }
        return (worstCosine, worstAbs)
    }

    /// Token ids, embeddings and every layer's hidden states of `directory` against `oracle`.
    static func checkAgainstSentenceTransformers(_ directory: String, oracle name: String, batchSize: Int) throws {
        let oracle = try oracle(name)
        let embedder = try SentenceEmbedder(directory: directory)
        let texts = oracle["texts"] as! [String], ids = oracle["ids"] as! [[Int]]
        #expect(texts.count == 12 && ids.count == texts.count)
        for (text, expected) in zip(texts, ids) {
            #expect(embedder.tokenize(text).ids == expected, "\(name): ids of \(text.debugDescription)")
        }
        #expect(ids.contains { $0.count == embedder.maxLength } && embedder.tokenize(texts.last!).truncated, "the long text is truncated")
        let (cosine, abs) = compare(embedder.embed(texts, batchSize: batchSize), rows(oracle["embeddings"]))
        print("\(name): \(texts.count) embeddings against sentence-transformers: max 1 − cos \(cosine), max |Δ| \(abs)")
        #expect(cosine <= 1e-5 && abs <= 1e-4, "\(name): max 1 − cos \(cosine), max |Δ| \(abs)")

        // Where the embeddings differ, these say which layer went wrong first.
        let sums = oracle["layer_abs_sums"] as! [[Double]], first = oracle["first_token"] as! [[[NSNumber]]]
        for (t, sequence) in ids.enumerated() {
            _ = embedder.encoder.hiddenStates([sequence]) { layer, h in
                let sum = h.buffer.reduce(0.0) { $0 + Double(Swift.abs($1)) }
                #expect(Swift.abs(sum - sums[t][layer]) <= 1e-4 * sums[t][layer], "\(name) text \(t) layer \(layer): Σ|h| \(sum) against \(sums[t][layer])")
                if layer < 2 {
                    let d = zip(first[t][layer], h.buffer.prefix(16)).map { Swift.abs($0.floatValue - $1) }.max()!
                    #expect(d <= 1e-4, "\(name) text \(t) layer \(layer): first token off by \(d)")
                }
            }
        }
    }

    @Test func tinyModelMatchesSentenceTransformers() throws {
        try Self.checkAgainstSentenceTransformers(Self.tiny, oracle: "tiny.json", batchSize: 4)
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.miniLM), "all-MiniLM-L6-v2 not fetched: run scripts/fetch-minilm.sh"))
    func miniLMMatchesSentenceTransformers() throws {
        try Self.checkAgainstSentenceTransformers(RealModel.miniLM, oracle: "minilm.json", batchSize: 32)
        let settings = try SentenceEmbedder(directory: RealModel.miniLM)
        #expect(settings.maxLength == 256 && settings.dimension == 384 && settings.settings.pooling == [.mean] && settings.settings.normalize)
    }

    /// A batch of mixed lengths gives each text what it gets alone.
    @Test(arguments: [tiny, RealModel.miniLM])
    func batchingDoesNotChangeEmbeddings(directory: String) throws {
        guard directory == Self.tiny || RealModel.enabled(directory) else {
            print("skipped for \(directory): all-MiniLM-L6-v2 not fetched (scripts/fetch-minilm.sh)")
            return
        }
        let embedder = try SentenceEmbedder(directory: directory)
        let texts = try Self.oracle("tiny.json")["texts"] as! [String]
        let together = embedder.embed(texts, batchSize: texts.count), alone = embedder.embed(texts, batchSize: 1)
        let diff = maxAbsDifference(together, alone)
        #expect(diff <= 1e-6, "\(directory): batch of \(texts.count) against one at a time: max |Δ| \(diff)")
    }

    /// A copy of the tiny model with `edit` applied to its files.
    static func editedTinyModel(_ edit: (String) throws -> Void) throws -> String {
        let copy = NSTemporaryDirectory() + "lqlora-bert-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: tiny, toPath: copy)
        try edit(copy)
        return copy
    }

    static func writeJSON(_ value: Any, to path: String) throws {
        try JSONSerialization.data(withJSONObject: value).write(to: URL(fileURLWithPath: path))
    }

    static func editJSON(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        edit(&json)
        try writeJSON(json, to: path)
    }

    /// cls, max, mean_sqrt_len_tokens, cls+mean and the legacy booleans for max+mean, each as
    /// sentence-transformers wrote its modules.json and pooling config (no Normalize).
    @Test func poolingModesMatchSentenceTransformers() throws {
        let oracle = try Self.oracle("tiny.json"), texts = oracle["texts"] as! [String]
        let variants = oracle["pooling_variants"] as! [[String: Any]]
        #expect(variants.count == 5)
        for variant in variants {
            let name = variant["name"] as! String
            let dir = try Self.editedTinyModel { dir in
                try Self.writeJSON(variant["modules"]!, to: dir + "/modules.json")
                try Self.writeJSON(variant["pooling_config"]!, to: dir + "/1_Pooling/config.json")
            }
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let embedder = try SentenceEmbedder(directory: dir)
            #expect(!embedder.settings.normalize)
            let (cosine, abs) = Self.compare(embedder.embed(texts, batchSize: 5), Self.rows(variant["embeddings"]))
            #expect(cosine <= 1e-5 && abs <= 1e-4, "\(name): max 1 − cos \(cosine), max |Δ| \(abs)")
        }
    }

    /// Without modules.json a directory is a plain transformer: mean pooling, not normalised, as
    /// sentence-transformers loads one.
    @Test func plainBertModelDirectoryIsMeanPooled() throws {
        let dir = try Self.editedTinyModel { try FileManager.default.removeItem(atPath: $0 + "/modules.json") }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let embedder = try SentenceEmbedder(directory: dir)
        #expect(embedder.settings.pooling == [.mean] && !embedder.settings.normalize)
        let oracle = try Self.oracle("tiny.json")
        let got = embedder.embed(oracle["texts"] as! [String], batchSize: 4)
        let d = embedder.dimension
        for i in 0..<got.shape[0] {
            let row = got.pointer + i * d
            let norm = (0..<d).reduce(Float(0)) { $0 + row[$1] * row[$1] }.squareRoot()
            #expect(Swift.abs(norm - 1) > 1e-3, "text \(i) came out normalised")
            for j in 0..<d { row[j] /= norm }
        }
        let (cosine, _) = Self.compare(got, Self.rows(oracle["embeddings"]))
        #expect(cosine <= 1e-5)
    }

    @Test func configErrorsNameTheFileAndKey() throws {
        let missing = try Self.editedTinyModel { try Self.editJSON($0 + "/config.json") { $0["hidden_size"] = nil } }
        defer { try? FileManager.default.removeItem(atPath: missing) }
        #expect(throws: ModelError.badConfig(path: missing + "/config.json", key: "hidden_size", detail: "is missing")) {
            try SentenceEmbedder(directory: missing)
        }
        let relu = try Self.editedTinyModel { try Self.editJSON($0 + "/config.json") { $0["hidden_act"] = "relu" } }
        defer { try? FileManager.default.removeItem(atPath: relu) }
        #expect(throws: ModelError.unsupported(path: relu + "/config.json", what: "hidden_act 'relu' (gelu, with erf, is)")) {
            try SentenceEmbedder(directory: relu)
        }
        let long = try Self.editedTinyModel { try Self.editJSON($0 + "/sentence_bert_config.json") { $0["max_seq_length"] = 25 } }
        defer { try? FileManager.default.removeItem(atPath: long) }
        #expect(throws: ModelError.badConfig(path: long + "/sentence_bert_config.json", key: "max_seq_length",
                                             detail: "is 25: it must hold the 2 special tokens and fit max_position_embeddings (24)")) {
            try SentenceEmbedder(directory: long)
        }
    }

    @Test func aMissingTensorIsNamedWithItsFile() throws {
        let name = "encoder.layer.1.attention.output.LayerNorm.bias"
        let dir = try Self.editedTinyModel { dir in
            let path = dir + "/model.safetensors"
            let file = try SafeTensorsFile(path: path)
            let kept = try file.tensorNames.filter { $0 != name }.map { PendingTensor(name: $0, tensor: try file.floatTensor($0).copy()) }
            try SafeTensorsWriter.write(kept, to: path)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ModelError.missingWeight(path: dir + "/model.safetensors", tensor: name)) {
            try SentenceEmbedder(directory: dir)
        }
    }

    @Test func unsupportedPipelinesAreRefusedByName() throws {
        for mode in ["weightedmean", "lasttoken"] {
            let dir = try Self.editedTinyModel { try Self.editJSON($0 + "/1_Pooling/config.json") { $0["pooling_mode"] = mode } }
            defer { try? FileManager.default.removeItem(atPath: dir) }
            #expect(throws: ModelError.unsupported(path: dir + "/1_Pooling/config.json",
                                                   what: "pooling mode '\(mode)' (cls, max, mean, mean_sqrt_len_tokens are)")) {
                try SentenceEmbedder(directory: dir)
            }
        }
        let dense = "sentence_transformers.models.Dense"
        let dir = try Self.editedTinyModel { dir in
            var modules = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/modules.json"))) as! [[String: Any]]
            modules.insert(["idx": 2, "name": "2", "path": "2_Dense", "type": dense], at: 2)
            try Self.writeJSON(modules, to: dir + "/modules.json")
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ModelError.unsupported(path: dir + "/modules.json", what: "module 2 (\(dense)) (Transformer, Pooling and Normalize are)")) {
            try SentenceEmbedder(directory: dir)
        }
    }
}
