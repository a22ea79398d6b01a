import Foundation
import LQFormats
import LQModel
import LQTensor
import Testing

/// `lqlora export` against llama.cpp's own tools on a tiny Llama (scripts/make-gguf-export-fixtures.py):
/// convert_hf_to_gguf.py for f32/f16/bf16/q8_0, llama-quantize for q4_0/q4_1/Q4_K_M/Q5_K_M/Q6_K,
/// convert_lora_to_gguf.py for the adapter. Every metadata key (value type, value, order) and every
/// tensor (type, shape, CRC-32 of its bytes) must be llama.cpp's.
struct GGUFExportTests {
    static let fixtures = modelFixtures + "/gguf-export"
    static let expected: [String: Any] = {
        let data = FileManager.default.contents(atPath: fixtures + "/expected.json")!
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()
    static let layers = 4, rank = 4
    static let projections: [(String, [Int])] = [("self_attn.q_proj", [256, 256]), ("self_attn.k_proj", [128, 256]), ("self_attn.v_proj", [128, 256]),
                                                 ("self_attn.o_proj", [256, 256]), ("mlp.gate_proj", [288, 256]), ("mlp.up_proj", [288, 256]),
                                                 ("mlp.down_proj", [256, 288])]

    /// The fixture script's weight formula: (h >> 8) / 2^24 − 0.5, times scale, h = i·2654435761 + crc32(name) mod 2^32.
    static func weight(_ name: String, _ shape: [Int], _ scale: Float, plus: Float = 0) -> PendingTensor {
        let seed = UInt64(Array(name.utf8).withUnsafeBytes { crc32($0) })
        let t = Tensor(zeros: shape)
        for i in 0..<t.count {
            let h = (UInt64(i) &* 2654435761 &+ seed) % (1 << 32)
            var v = (Float(h >> 8) / 16777216 - 0.5) * scale
            if plus != 0 { v += plus }
            t.pointer[i] = v
        }
        return PendingTensor(name: name, tensor: t)
    }

    /// The tiny model (and its adapter) written into a fresh directory named as the script names it.
    /// `fixture` names the model folder (model, or model-spm with its 514-token SentencePiece vocabulary).
    static func makeModel(fixture: String = "model", name: String = "tiny-Llama-1K", vocab: Int = 128) throws -> (root: Scratch, model: String, adapter: String) {
        let root = Scratch()
        let model = root.file(name), adapter = root.file("tiny-lora")
        for (dir, src) in [(model, fixture), (adapter, "adapter")] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in try FileManager.default.contentsOfDirectory(atPath: fixtures + "/" + src) {
                try FileManager.default.copyItem(atPath: fixtures + "/" + src + "/" + f, toPath: dir + "/" + f)
            }
        }
        var t = [weight("model.embed_tokens.weight", [vocab, 256], 0.5), weight("model.norm.weight", [256], 0.2, plus: 1),
                 weight("lm_head.weight", [vocab, 256], 0.1)]
        var a: [PendingTensor] = []
        for i in 0..<layers {
            for norm in ["input_layernorm", "post_attention_layernorm"] { t.append(weight("model.layers.\(i).\(norm).weight", [256], 0.2, plus: 1)) }
            for (m, shape) in projections {
                t.append(weight("model.layers.\(i).\(m).weight", shape, 0.1))
                let base = "base_model.model.model.layers.\(i).\(m)"
                a.append(weight(base + ".lora_A.weight", [rank, shape[1]], 0.2))
                a.append(weight(base + ".lora_B.weight", [shape[0], rank], 0.05))
            }
        }
        try SafeTensorsWriter.write(t, to: model + "/model.safetensors")
        try SafeTensorsWriter.write(a, to: adapter + "/adapter_model.safetensors")
        return (root, model, adapter)
    }

    /// (key, GGUF value type code, element type code for arrays) in file order, parsed independently of GGUFFile.
    static func keyTypes(_ path: String) throws -> [(String, UInt32, UInt32?)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var at = 16
        func u32() -> UInt32 { defer { at += 4 }; return data[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
        func u64() -> Int { defer { at += 8 }; return Int(data[at..<(at + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) }
        func skip(_ type: UInt32) {
            switch type {
            case 0, 1, 7: at += 1
            case 2, 3: at += 2
            case 4, 5, 6: at += 4
            case 8: at += u64()
            case 9:
                let element = u32(), n = u64()
                for _ in 0..<n { skip(element) }
            default: at += 8
            }
        }
        let kvCount = data[16..<24].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        at = 24
        var out: [(String, UInt32, UInt32?)] = []
        for _ in 0..<kvCount {
            let n = u64()
            let key = String(decoding: data[at..<(at + n)], as: UTF8.self)
            at += n
            let type = u32()
            var element: UInt32?
            if type == 9 { element = data[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
            skip(type)
            out.append((key, type, element))
        }
        return out
    }

    static let typeNames: [String: UInt32] = ["UINT8": 0, "INT8": 1, "UINT16": 2, "INT16": 3, "UINT32": 4, "INT32": 5, "FLOAT32": 6,
                                              "BOOL": 7, "STRING": 8, "ARRAY": 9, "UINT64": 10, "INT64": 11, "FLOAT64": 12]
    /// Free-text labels gguf-py's name heuristics derive (from the directory name and the parameter count).
    static let namingHeuristics: Set<String> = ["general.finetune", "general.basename", "general.size_label"]

    /// Compares the file at `path` with the fixture's description `key`.
    static func check(_ path: String, against key: String) throws {
        let reference = expected[key] as! [String: Any]
        let meta = (reference["metadata"] as! [[Any]]).filter { !namingHeuristics.contains($0[0] as! String) }
        let file = try GGUFFile(path: path)
        let types = try keyTypes(path).filter { !namingHeuristics.contains($0.0) }
        #expect(types.map(\.0) == meta.map { $0[0] as! String }, "\(key): keys and their order")
        for (entry, (k, type, element)) in zip(meta, types) {
            let name = entry[0] as! String, typeName = (entry[1] as! String).split(separator: "/").map(String.init)
            #expect(type == typeNames[typeName[0]] && element == typeName.dropFirst().first.map { typeNames[$0]! }, "\(key): \(k)'s type")
            let value = file.metadata[name]
            switch entry[2] {
            case let s as String: #expect(value?.string == s, "\(key): \(name)")
            case let b as Bool where typeName[0] == "BOOL": #expect(value?.bool == b, "\(key): \(name)")
            case let n as NSNumber where typeName[0] == "FLOAT32": #expect(value?.double == Double(Float(n.doubleValue)), "\(key): \(name)")
            case let n as NSNumber: #expect(value?.int == n.intValue, "\(key): \(name)")
            case let a as [Any]:
                let got = value?.array ?? []
                #expect(got.count == a.count, "\(key): \(name) count")
                let floats = typeName.dropFirst().first == "FLOAT32"
                let same = zip(got, a).allSatisfy { g, e in
                    if let s = e as? String { return g.string == s }
                    guard let n = e as? NSNumber else { return false }
                    return floats ? g.double == Double(Float(n.doubleValue)) : g.int == n.intValue
                }
                #expect(same, "\(key): \(name)")
            default: Issue.record("\(key): \(name) has an unexpected fixture value")
            }
        }
        let tensors = reference["tensors"] as! [[Any]]
        #expect(Set(file.tensors.map(\.name)) == Set(tensors.map { $0[0] as! String }), "\(key): tensor names")
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        for t in tensors {
            let name = t[0] as! String
            guard let info = try? file.info(name) else { continue }
            let type = GGMLType(rawValue: info.rawType)
            #expect(type?.name == t[1] as? String, "\(key): \(name) type")
            #expect(info.dims == (t[2] as! [Int]), "\(key): \(name) shape")
            let start = file.dataStart + info.offset, count = GGMLBlocks.byteCount(type ?? .f32, values: info.count)
            let crc = data[start..<(start + count)].withUnsafeBytes { crc32($0) }
            #expect(crc == (t[3] as! NSNumber).uint32Value, "\(key): \(name) bytes")
        }
    }

    @Test(arguments: GGUFFileType.allCases)
    func exportIsWhatLlamaCppWrites(type: GGUFFileType) throws {
        let (root, model, _) = try Self.makeModel()
        defer { root.cleanUp() }
        let out = root.file("out.gguf")
        try GGUFExport.model(model, type: type, to: out)
        try Self.check(out, against: type.rawValue)
    }

    @Test func adapterIsWhatConvertLoRAToGGUFWrites() throws {
        let (root, model, adapter) = try Self.makeModel()
        defer { root.cleanUp() }
        let out = root.file("lora.gguf")
        try GGUFExport.adapter(adapter, model: model, type: .f32, to: out)
        try Self.check(out, against: "lora")
    }

    /// A SentencePiece vocabulary: from tokenizer.model as convert_hf_to_gguf.py's _set_vocab_sentencepiece
    /// writes it (the model's scores and piece types), and without it from tokenizer.json as its
    /// _set_vocab_llama_hf does.
    @Test(arguments: [true, false])
    func sentencePieceVocabularyIsWhatConvertWrites(withModelFile: Bool) throws {
        let (root, model, _) = try Self.makeModel(fixture: "model-spm", name: "tiny-Llama-spm", vocab: 514)
        defer { root.cleanUp() }
        if !withModelFile { try FileManager.default.removeItem(atPath: model + "/tokenizer.model") }
        let out = root.file("spm.gguf")
        try GGUFExport.model(model, type: .f32, to: out)
        try Self.check(out, against: withModelFile ? "spm" : "spm-hf")
    }

    /// The exported SentencePiece vocabulary, read back by `convert --from-gguf`'s tokenizer, gives
    /// SentencePiece's own ids (the fixture script's, from the sentencepiece library).
    @Test func sentencePieceExportTokenizesAsSentencePiece() throws {
        let (root, model, _) = try Self.makeModel(fixture: "model-spm", name: "tiny-Llama-spm", vocab: 514)
        defer { root.cleanUp() }
        let out = root.file("spm.gguf")
        try GGUFExport.model(model, type: .f32, to: out)
        let json = try GGUFConverter(gguf: try GGUFFile(path: out)).tokenizerJSON()
        let dir = root.file("read-back")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let tokenizer = try loadTokenizer(directory: dir)
        let reference = Self.expected["spm-ids"] as! [String: Any]
        let texts = reference["texts"] as! [String], ids = reference["ids"] as! [[Int]]
        #expect(texts.count == ids.count && !texts.isEmpty)
        for (text, expected) in zip(texts, ids) {
            let got = try tokenizer.encode(text, addSpecialTokens: true)
            #expect(got == expected, "\(text.debugDescription)")
        }
    }

    /// Without tokenizer.model, a vocabulary whose ids are not 0..<count (here one negative) is named.
    @Test func sentencePieceVocabularyWithAGapIsNamed() throws {
        let (root, model, _) = try Self.makeModel(fixture: "model-spm", name: "tiny-Llama-spm", vocab: 514)
        defer { root.cleanUp() }
        try FileManager.default.removeItem(atPath: model + "/tokenizer.model")
        let path = model + "/tokenizer.json"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var bpe = json["model"] as! [String: Any]
        var vocab = bpe["vocab"] as! [String: Any]
        vocab["\u{2581}t"] = -5
        bpe["vocab"] = vocab
        json["model"] = bpe
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        #expect(throws: GGUFExportError.unsupportedTokenizer(path: path, what: "model.vocab's ids are not 0..<512")) {
            try GGUFExport.model(model, type: .f32, to: root.file("x.gguf"))
        }
        #expect(!FileManager.default.fileExists(atPath: root.file("x.gguf")))
    }

    /// A tokenizer.model SentencePiece cannot read is named.
    @Test func unreadableSentencePieceModelIsNamed() throws {
        let (root, model, _) = try Self.makeModel(fixture: "model-spm", name: "tiny-Llama-spm", vocab: 514)
        defer { root.cleanUp() }
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: model + "/tokenizer.model"))
        do {
            try GGUFExport.model(model, type: .f32, to: root.file("x.gguf"))
            Issue.record("an unreadable tokenizer.model was accepted")
        } catch let GGUFExportError.unsupportedTokenizer(path, what) {
            #expect(path == model + "/tokenizer.model" && what.contains("SentencePiece"), "\(what)")
        }
        #expect(!FileManager.default.fileExists(atPath: root.file("x.gguf")))
    }

    /// --merge: each adapted matrix is W + (alpha / r)·B·A (computed here in double), then permuted.
    @Test func mergedExportHoldsTheMergedWeights() throws {
        let (root, model, adapter) = try Self.makeModel()
        defer { root.cleanUp() }
        let out = root.file("merged.gguf")
        let summary = try GGUFExport.model(model, adapter: adapter, type: .f32, to: out)
        #expect(summary.merged == Self.layers * 7)
        let file = try GGUFFile(path: out)
        let base = try SafeTensorsFile(path: model + "/model.safetensors"), lora = try SafeTensorsFile(path: adapter + "/adapter_model.safetensors")
        for (gguf, hf, heads) in [("blk.1.attn_q.weight", "self_attn.q_proj", 4), ("blk.2.attn_k.weight", "self_attn.k_proj", 2),
                                  ("blk.3.ffn_down.weight", "mlp.down_proj", 0)] {
            var got = try file.floatTensor(file.info(gguf))
            if heads > 0 { got = GGUFConverter.unpermute(got, heads: heads) }
            let layer = gguf.split(separator: ".")[1]
            let w = try base.floatTensor("model.layers.\(layer).\(hf).weight")
            let a = try lora.floatTensor("base_model.model.model.layers.\(layer).\(hf).lora_A.weight")
            let b = try lora.floatTensor("base_model.model.model.layers.\(layer).\(hf).lora_B.weight")
            let rows = w.shape[0], cols = w.shape[1]
            var worst = 0.0
            for r in 0..<rows {
                for c in 0..<cols {
                    var d = 0.0
                    for k in 0..<Self.rank { d += Double(b[r, k]) * Double(a[k, c]) }
                    worst = max(worst, abs(Double(got[r, c]) - (Double(w[r, c]) + 2 * d)))
                }
            }
            #expect(worst < 1e-6, "\(gguf): \(worst)")
        }
    }

    @Test func adapterTargetsLlamaCppCannotNameAreRefused() throws {
        let (root, model, adapter) = try Self.makeModel()
        defer { root.cleanUp() }
        let path = adapter + "/adapter_model.safetensors"
        let extra = "base_model.model.model.embed_tokens.lora_A.weight"
        try SafeTensorsWriter.write([Self.weight(extra, [4, 128], 0.1), Self.weight("base_model.model.model.embed_tokens.lora_B.weight", [256, 4], 0.1)],
                                    to: path)
        #expect(throws: GGUFExportError.adapterTargetUnnamed(path: path, tensor: extra)) {
            try GGUFExport.adapter(adapter, model: model, to: root.file("x.gguf"))
        }
        #expect(throws: GGUFExportError.adapterTargetUnnamed(path: path, tensor: extra)) {
            try GGUFExport.model(model, adapter: adapter, type: .f16, to: root.file("y.gguf"))
        }
        #expect(throws: GGUFExportError.adapterType(type: "q4_k")) { try GGUFExport.adapter(adapter, model: model, type: .q4_k, to: root.file("z.gguf")) }
        #expect(!FileManager.default.fileExists(atPath: root.file("x.gguf")) && !FileManager.default.fileExists(atPath: root.file("y.gguf")))
    }

    /// A write that fails part-way leaves neither the file nor its temporary sibling.
    @Test func failedWriteLeavesNoFile() throws {
        let root = Scratch()
        defer { root.cleanUp() }
        struct Stop: Error {}
        let ok = GGUFTensorSpec(name: "a", shape: [2, 32], type: .q8_0) { raw in
            GGMLBlocks.quantize(.q8_0, UnsafeBufferPointer(Tensor(zeros: [2, 32]).buffer), rows: 2, into: raw)
        }
        let failing = GGUFTensorSpec(name: "b", shape: [4], type: .f32) { _ in throw Stop() }
        #expect(throws: Stop.self) { try GGUFWriter.write(metadata: [("general.architecture", .string("llama"))], tensors: [ok, failing], to: root.file("m.gguf")) }
        #expect(root.contents().isEmpty)
        #expect(throws: GGUFWriteError.notWholeBlocks(path: root.file("m.gguf"), tensor: "c", type: "Q4_K", columns: 288)) {
            try GGUFWriter.write(metadata: [], tensors: [GGUFTensorSpec(name: "c", shape: [1, 288], type: .q4_K) { _ in }], to: root.file("m.gguf"))
        }
    }
}

/// A fresh temporary directory.
struct Scratch {
    let path = NSTemporaryDirectory() + "lqlora-export-" + UUID().uuidString
    init() { try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
    func file(_ name: String) -> String { path + "/" + name }
    func contents() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }
    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}
