import Foundation
import LQFormats
import LQQuant
import LQTensor
import Testing

/// `lqlora quantize`, `dequantize` and `inspect` end to end on a small Llama-shaped checkpoint.
struct QuantizeRoundTripTests {
    /// A one-layer Llama (hidden 64, intermediate 128, vocabulary 32) in bf16; `poison` puts a NaN in k_proj.
    static func makeModel(in dir: TemporaryDirectory, poison: Bool = false) throws -> String {
        let path = dir.file("model")
        var rng = SeededGenerator(seed: 21)
        let ones = Tensor(shape: [64], values: [Float](repeating: 1, count: 64))
        var tensors: [PendingTensor] = [
            PendingTensor(name: "model.embed_tokens.weight", tensor: Tensor.gaussian([32, 64], using: &rng), dtype: .bf16),
            PendingTensor(name: "model.norm.weight", tensor: ones, dtype: .bf16),
            PendingTensor(name: "model.layers.0.input_layernorm.weight", tensor: ones, dtype: .bf16),
            PendingTensor(name: "model.layers.0.post_attention_layernorm.weight", tensor: ones, dtype: .bf16),
        ]
        for p in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"] {
            let w = Tensor.gaussian(p.hasSuffix("gate_proj") || p.hasSuffix("up_proj") ? [128, 64] : p.hasSuffix("down_proj") ? [64, 128] : [64, 64],
                                    using: &rng, scale: 0.05)
            if poison && p == "self_attn.k_proj" { w.pointer[77] = .nan }
            tensors.append(PendingTensor(name: "model.layers.0.\(p).weight", tensor: w, dtype: .bf16))
        }
        try CheckpointWriter.write(tensors, toDirectory: path)
        try Data(#"{"model_type": "llama", "torch_dtype": "bfloat16", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 32, "tie_word_embeddings": true, "rms_norm_eps": 1e-05}"#.utf8)
            .write(to: URL(fileURLWithPath: path + "/config.json"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: path + "/tokenizer.json"))
        return path
    }

    @Test(builtBinary)
    func quantizeInspectDequantize() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let model = try Self.makeModel(in: dir)
        let out = dir.file("nf4")
        let q = try CLI.run(["quantize", "--model", model, "--out", out, "--method", "nf4", "--targets", "q_proj,k_proj,up_proj"])
        #expect(q.status == 0, "\(q.stderr)")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: out))
                == ["model.safetensors", "config.json", "quant_report.json", "tokenizer.json"])
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir.path)).contains { $0.hasPrefix(".") })

        // config.json: bitsandbytes' quantization_config, floats kept as floats for transformers.
        let configText = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        #expect(configText.contains(#""llm_int8_threshold": 6.0"#) && configText.contains(#""rms_norm_eps": 1e-05"#))
        let config = try JSONSerialization.jsonObject(with: Data(configText.utf8)) as! [String: Any]
        let qc = config["quantization_config"] as! [String: Any]
        #expect(qc["quant_method"] as? String == "bitsandbytes" && qc["bnb_4bit_compute_dtype"] as? String == "bfloat16")

        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/quant_report.json"))) as! [String: Any]
        #expect(report["method"] as? String == "nf4-b64-dq8")
        #expect(abs((report["average_bits"] as! Double) - 4.127) < 1e-3)
        let matrices = report["matrices"] as! [[String: Any]]
        #expect(matrices.map { $0["name"] as! String } == ["model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                                           "model.layers.0.self_attn.q_proj.weight"])
        // The stored matrices are exactly what the quantizer makes of the bf16 weights.
        let source = try Checkpoint(path: model)
        let quantized = try Checkpoint(path: out)
        for m in matrices {
            let name = m["name"] as! String
            let expected = try Quantizer.quantize(source.floatTensor(name), config: .nf4DoubleQuant)
            let (loaded, original) = try QuantizedStorage.load(name, from: quantized)
            #expect(original == .bf16 && loaded.codes == expected.codes && loaded.scaleCodes == expected.scaleCodes)
            let rel = m["rel_error"] as! Double
            #expect(rel > 0.05 && rel < 0.15, "\(name): \(rel)")
        }
        // Untouched tensors are copied byte for byte.
        for name in ["model.embed_tokens.weight", "model.norm.weight"] {
            let (a, ea) = try source.locate(name), (b, eb) = try quantized.locate(name)
            #expect(Array(a.bytes(of: ea)) == Array(b.bytes(of: eb)) && ea.dtype == eb.dtype)
        }

        let inspect = try CLI.run(["inspect", out, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as! [String: Any]
        #expect((json["quantized"] as! [[String: Any]]).count == 3)
        #expect(json["num_parameters"] as? Int == 32 * 64 + 3 * 64 + 64 * 64 * 4 + 128 * 64 * 3)

        let dense = dir.file("dense")
        let d = try CLI.run(["dequantize", "--model", out, "--out", dense, "--dtype", "f32"])
        #expect(d.status == 0, "\(d.stderr)")
        let restored = try Checkpoint(path: dense)
        for m in matrices {
            let name = m["name"] as! String
            let expected = try QuantizedStorage.load(name, from: quantized).matrix.dequantize()
            #expect(try restored.floatTensor(name).array == expected.array)
        }
        #expect(Set(restored.tensorNames) == Set(source.tensorNames))
    }

    @Test(builtBinary)
    func badInputLeavesNothingBehind() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let model = try Self.makeModel(in: dir, poison: true)
        let out = dir.file("out")
        let nan = try CLI.run(["quantize", "--model", model, "--out", out])
        #expect(nan.status == 1 && nan.stderr.contains("model.layers.0.self_attn.k_proj.weight") && nan.stderr.contains("nan"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model"])

        let clean = try Self.makeModel(in: TemporaryDirectory())
        let noTarget = try CLI.run(["quantize", "--model", clean, "--out", out, "--targets", "q_proj,wq"])
        #expect(noTarget.status == 1 && noTarget.stderr.contains("'wq'"))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: out + "/keep"))
        let exists = try CLI.run(["quantize", "--model", clean, "--out", out])
        #expect(exists.status == 1 && exists.stderr.contains("already exists"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["keep"])
        let method = try CLI.run(["quantize", "--model", clean, "--out", dir.file("x"), "--method", "nf5"])
        #expect(method.status != 0 && method.stderr.contains("nf5"))
    }
}
