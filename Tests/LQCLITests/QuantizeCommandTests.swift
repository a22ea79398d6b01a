import Foundation
import LQFormats
import LQTensor
import LQTestSupport
import Testing

/// `lqlora quantize` (every NormalFloat method, --config, --no-double-quant, --block-size) and
/// `lqlora dequantize` against the reference quantizers: bitsandbytes' quantize_4bit/dequantize_4bit
/// for NF4, LQ-LoRA's grid quantizer (torch) for NF2/3/8 and --config, bitsandbytes' blockwise rule
/// with the NF3 codebook for NF3 without double quantization (scripts/make-cli-fixtures.py).
struct QuantizeCommandTests {
    static var cases: [String: [String: Any]] { CLI.oracles["quantize"] as! [String: [String: Any]] }
    static let qProj = "model.layers.0.self_attn.q_proj.weight"
    static let untouched = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                            "model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight"]

    /// Fingerprints of a dequantized matrix, in float64: Σ Ŵ, Σ Ŵ², Σ Ŵ·W and ‖W − Ŵ‖/‖W‖. One code that
    /// differs from the reference moves Σ Ŵ by at least a codebook step times its block's scale (> 1e-5 here).
    static func fingerprint(_ q: Tensor, _ w: Tensor) -> [String: Double] {
        var s = 0.0, s2 = 0.0, dot = 0.0, err = 0.0, norm = 0.0
        for i in 0..<q.count {
            let a = Double(q.pointer[i]), b = Double(w.pointer[i])
            s += a; s2 += a * a; dot += a * b; err += (b - a) * (b - a); norm += b * b
        }
        return ["sum": s, "sum_squares": s2, "dot_w": dot, "rel_error": (err / norm).squareRoot()]
    }

    @Test(builtBinary, arguments: QuantizeCommandTests.cases.keys.sorted())
    func dequantizedWeightsMatchTheReference(_ name: String) throws {
        let c = Self.cases[name]!
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let q = dir.file("q"), dense = dir.file("dense")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q] + (c["args"] as! [String]))
        let expected = c["matrices"] as! [String: [String: Double]]

        // quant_report.json: the configuration, its cost, and each matrix's ‖W − Ŵ‖/‖W‖ as the reference computes it.
        let report = try CLI.jsonFile(q + "/quant_report.json")
        #expect(report["method"] as? String == c["config"] as? String)
        #expect(abs((report["average_bits"] as! Double) - (c["bits_per_param"] as! Double)) < 1e-9, "\(report["average_bits"]!)")
        let rows = report["matrices"] as! [[String: Any]]
        #expect(Set(rows.map { $0["name"] as! String }) == Set(expected.keys) && rows.count == 14)
        for row in rows {
            let m = row["name"] as! String
            let rel = row["rel_error"] as! Double, oracle = expected[m]!["rel_error"]!
            #expect(relativelyClose(rel, oracle, 1e-6), "\(name) \(m): rel_error \(rel) vs reference \(oracle)")
            #expect((row["config"] as! [String: Any])["name"] as? String == c["config"] as? String)
        }

        // The dense checkpoint back: every matrix's fingerprints, q_proj element by element.
        _ = try CLI.succeed(["dequantize", "--model", q, "--out", dense, "--dtype", "f32"])
        let restored = try Checkpoint(path: dense), source = try Checkpoint(path: CLI.model)
        #expect(Set(restored.tensorNames) == Set(source.tensorNames))
        for (m, want) in expected {
            let got = Self.fingerprint(try restored.floatTensor(m), try source.floatTensor(m))
            for key in ["sum", "sum_squares", "dot_w"] {
                #expect(abs(got[key]! - want[key]!) <= 1e-8, "\(name) \(m): \(key) \(got[key]!) vs reference \(want[key]!)")
            }
            #expect(relativelyClose(got["rel_error"]!, want["rel_error"]!, 1e-9), "\(name) \(m)")
        }
        let reference = try CLI.tensors().floatTensor("quant.\(name).q_proj")
        let diff = maxAbsDifference(try restored.floatTensor(Self.qProj), reference)
        #expect(diff == 0, "\(name) q_proj: max |Δ| \(diff) from the reference dequantization")
        for t in Self.untouched {
            let (a, ea) = try source.locate(t), (b, eb) = try restored.locate(t)
            #expect(Array(a.bytes(of: ea)) == Array(b.bytes(of: eb)) && ea.dtype == eb.dtype, "\(t) copied unchanged")
        }
    }

    /// The fixture's formats differ from one another by far more than the tolerances above.
    @Test func formatsAreDistinguishable() throws {
        let names = Self.cases.keys.sorted()
        for (i, a) in names.enumerated() {
            for b in names[(i + 1)...] {
                let ea = (Self.cases[a]!["matrices"] as! [String: [String: Double]])[Self.qProj]!["sum"]!
                let eb = (Self.cases[b]!["matrices"] as! [String: [String: Double]])[Self.qProj]!["sum"]!
                #expect(abs(ea - eb) > 1e-5, "\(a) vs \(b)")
            }
        }
    }

    /// --overwrite replaces an existing output; without it the command refuses, names the directory, and leaves it alone.
    @Test(builtBinary)
    func overwrite() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let q = dir.file("q")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q, "--method", "nf4"])
        let refused = try CLI.run(["quantize", "--model", CLI.model, "--out", q, "--method", "nf2"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains(q) && refused.stderr.contains("already exists"), "\(refused.stderr)")
        #expect(try CLI.jsonFile(q + "/quant_report.json")["method"] as? String == "nf4-b64-dq8")

        try Data("stale".utf8).write(to: URL(fileURLWithPath: q + "/stale.txt"))
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q, "--method", "nf2", "--overwrite"])
        #expect(try CLI.jsonFile(q + "/quant_report.json")["method"] as? String == "nf2-b64-s8g256-fp32")
        #expect(!FileManager.default.fileExists(atPath: q + "/stale.txt"), "the old directory is replaced, not merged into")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["q"], "no staging directory left behind")
        let dense = dir.file("dense")
        _ = try CLI.succeed(["dequantize", "--model", q, "--out", dense, "--dtype", "f32"])
        let diff = maxAbsDifference(try Checkpoint(path: dense).floatTensor(Self.qProj), try CLI.tensors().floatTensor("quant.nf2.q_proj"))
        #expect(diff == 0, "the replacement holds the new format")
    }

    /// dequantize --dtype bf16 / f16: torch's rounding of the reference fp32 values, byte for byte;
    /// no --dtype keeps each matrix's original dtype (fp32 here).
    @Test(builtBinary)
    func dequantizeDTypes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let q = dir.file("q")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q, "--method", "nf4"])
        let oracle = try CLI.tensors()
        let source = try Checkpoint(path: CLI.model)
        for (dtype, stored, key) in [("bf16", DType.bf16, "dequant.q_proj.bf16"), ("f16", DType.f16, "dequant.q_proj.f16"),
                                     (nil, DType.f32, "quant.nf4.q_proj")] as [(String?, DType, String)] {
            let out = dir.file("dense-\(dtype ?? "default")")
            _ = try CLI.succeed(["dequantize", "--model", q, "--out", out] + (dtype.map { ["--dtype", $0] } ?? []))
            let restored = try Checkpoint(path: out)
            let (file, entry) = try restored.locate(Self.qProj)
            #expect(entry.dtype == stored && entry.shape == [64, 64])
            #expect(Array(file.bytes(of: entry)) == (try rawBytes(oracle, key)), "\(dtype ?? "default"): q_proj bytes")
            for m in (Self.cases["nf4"]!["matrices"] as! [String: Any]).keys {
                #expect(try restored.locate(m).1.dtype == stored, "\(m)")
            }
            for t in Self.untouched {
                let (a, ea) = try source.locate(t), (b, eb) = try restored.locate(t)
                #expect(Array(a.bytes(of: ea)) == Array(b.bytes(of: eb)) && ea.dtype == eb.dtype, "\(t) copied unchanged")
            }
            let config = try CLI.jsonFile(out + "/config.json")
            #expect(config["quantization_config"] == nil && config["vocab_size"] as? Int == 128)
        }
    }
}
