import Foundation
import LQFormats
import LQModel
import LQTensor
import Testing

let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// The GGUF reader and converter against files written by gguf-py (scripts/make-gguf-fixtures.py).
struct GGUFTests {
    @Test func metadataOfEveryValueType() throws {
        let f = try GGUFFile(path: modelFixtures + "/types.gguf")
        #expect(f.version == 3)
        let m = f.metadata
        #expect(m["t.u8"] == .uint(200) && m["t.i8"] == .int(-100) && m["t.u16"] == .uint(60000) && m["t.i16"] == .int(-30000))
        #expect(m["t.u32"] == .uint(4_000_000_000) && m["t.i32"] == .int(-2_000_000_000) && m["t.f32"] == .float(Double(Float(0.1))))
        #expect(m["t.bool"] == .bool(true) && m["t.str"] == .string("héllo ✓") && m["t.u64"] == .uint(1 << 63 + 5))
        #expect(m["t.i64"] == .int(-(1 << 62)) && m["t.f64"] == .float(1e-300))
        #expect(m["t.arr_str"] == .array([.string("a"), .string("bb"), .string("")]))
        #expect(m["t.arr_i32"] == .array([.int(1), .int(-2), .int(3)]))
    }

    @Test(arguments: ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"])
    func tensorsDecodeLikeGGUFPy(name: String) throws {
        let f = try GGUFFile(path: modelFixtures + "/types.gguf")
        let oracle = try SafeTensorsFile(path: modelFixtures + "/types.safetensors")
        let got = try f.floatTensor(f.info(name))
        let expected = try oracle.floatTensor(name)
        #expect(got.shape == expected.shape)
        #expect(got.array == expected.array)
    }

    @Test func convertedTinyLlamaIsTheHuggingFaceModel() throws {
        let converter = GGUFConverter(gguf: try GGUFFile(path: modelFixtures + "/tiny-llama.gguf"))
        let expected = try SafeTensorsFile(path: modelFixtures + "/tiny-llama.safetensors")
        let tensors = try converter.tensors(dtype: .f32)
        #expect(Set(tensors.map(\.name)) == Set(expected.tensorNames))
        for t in tensors {
            var bytes = [UInt8](repeating: 0, count: t.byteCount)
            try bytes.withUnsafeMutableBytes { try t.fill($0) }
            let e = try expected.entry(t.name)
            #expect(t.shape == e.shape, "\(t.name)")
            #expect(bytes == Array(expected.bytes(of: e)), "\(t.name)")
        }
        let config = try converter.config(dtype: .bf16)
        #expect(config["num_key_value_heads"] as? Int == 2 && config["head_dim"] as? Int == 16)
        #expect(config["tie_word_embeddings"] as? Bool == true && config["rms_norm_eps"] as? Double == 1e-5)
        let tokenizer = try converter.tokenizerJSON()
        let model = tokenizer["model"] as! [String: Any]
        #expect((model["merges"] as! [String]).first == "Ġ t")
        #expect((tokenizer["added_tokens"] as! [[String: Any]]).count == 3)
        #expect(try converter.tokenizerConfig()["bos_token"] as? String == "<|im_start|>")
    }

    @Test func malformedFilesAreNamed() throws {
        let dir = NSTemporaryDirectory() + "lqlora-gguf-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ bytes: [UInt8], _ name: String) throws -> String {
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
            return dir + "/" + name
        }
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let bad = try write(Array("GGML".utf8) + le(UInt32(3)), "magic.gguf")
        #expect(throws: GGUFError.notGGUF(path: bad)) { try GGUFFile(path: bad) }
        let old = try write(Array("GGUF".utf8) + le(UInt32(1)), "v1.gguf")
        #expect(throws: GGUFError.unsupportedVersion(path: old, version: 1)) { try GGUFFile(path: old) }
        let short = try write(Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(1)), "short.gguf")
        #expect(throws: GGUFError.truncated(path: short, at: 16)) { try GGUFFile(path: short) }
        // One IQ2_XXS tensor: listed, but its data cannot be decoded here.
        let name = Array("w".utf8)
        var k = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(1)) + le(UInt64(0))
        k += le(UInt64(name.count)) + name + le(UInt32(1)) + le(UInt64(256)) + le(UInt32(16)) + le(UInt64(0))
        k += [UInt8](repeating: 0, count: 32 - k.count % 32) + [UInt8](repeating: 0, count: 66)
        let iquant = try write(k, "iq.gguf")
        let file = try GGUFFile(path: iquant)
        #expect(throws: GGUFError.unsupportedTensorType(path: iquant, tensor: "w", type: 16)) { try file.floatTensor(file.info("w")) }
        #expect(GGUFError.unsupportedTensorType(path: iquant, tensor: "w", type: 16).description.contains("IQ2_XXS"))
    }
}

/// A SentencePiece vocabulary in GGUF (scripts/make-gguf-spm-fixture.py) against transformers' reading of it.
struct GGUFSentencePieceTests {
    @Test func mergesAndIdsMatchTransformers() throws {
        let converter = GGUFConverter(gguf: try GGUFFile(path: modelFixtures + "/spm-vocab.gguf"))
        let json = try converter.tokenizerJSON()
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: modelFixtures + "/spm-vocab-expected.json"))) as! [String: Any]
        let merges = ((json["model"] as! [String: Any])["merges"] as! [[String]])
        #expect(merges == expected["merges"] as! [[String]])
        let dir = NSTemporaryDirectory() + "lqlora-spm-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let tokenizer = try loadTokenizer(directory: dir)
        let texts = expected["texts"] as! [String], ids = expected["ids"] as! [[Int]]
        #expect(texts.count == ids.count && !texts.isEmpty)
        for (text, reference) in zip(texts, ids) {
            #expect(try tokenizer.encode(text, addSpecialTokens: true) == reference, "\(text.debugDescription)")
        }
    }
}
