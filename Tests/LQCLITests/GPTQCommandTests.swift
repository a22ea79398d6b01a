import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// `lqlora quantize --method gptq|rtn`: the checkpoint it writes is AutoGPTQ's layout with the codes
/// the library computes (the library is checked against AutoGPTQ in LQQuantTests and LQModelTests),
/// `eval` reads it, and bad input is refused by name with nothing written.
struct GPTQCommandTests {
    @Test(builtBinary)
    func rtnWritesAutoGPTQsLayoutWithTheLibrarysCodes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("rtn")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", out, "--method", "rtn", "--bits", "4", "--group-size", "32"])
        let config = try CLI.jsonFile(out + "/config.json")
        let q = config["quantization_config"] as! [String: Any]
        #expect(q["quant_method"] as? String == "gptq" && q["bits"] as? Int == 4 && q["group_size"] as? Int == 32 && q["sym"] as? Bool == true)
        #expect(FileManager.default.fileExists(atPath: out + "/quantize_config.json"))
        let checkpoint = try Checkpoint(path: out)
        let source = try Checkpoint(path: CLI.model)
        let module = "model.layers.1.mlp.down_proj"
        #expect(!checkpoint.contains(module + ".weight") && GPTQFormat.contains(module, in: checkpoint))
        #expect(try checkpoint.entry(module + ".qweight").shape == [96 * 4 / 32, 64])
        let w = try source.floatTensor(module + ".weight")
        let expected = UniformQuantization.roundToNearest(w.pointer, rows: 64, cols: 96, quantizer: UniformQuantizer(bits: 4, symmetric: true),
                                                          groupSize: 32).withHalfScales()
        let loaded = try GPTQFormat.load(module, from: checkpoint, settings: try GPTQFormat.Settings(modelConfig: config, path: out)!)
        #expect(loaded.codes == expected.codes && loaded.scales == expected.scales && loaded.zeros == expected.zeros)
        // Untouched tensors are copied byte for byte.
        #expect(Array(try checkpoint.locate("model.embed_tokens.weight").file.bytes(of: try checkpoint.entry("model.embed_tokens.weight")))
            == Array(try source.locate("model.embed_tokens.weight").file.bytes(of: try source.entry("model.embed_tokens.weight"))))
        let report = try CLI.jsonFile(out + "/quant_report.json")
        #expect((report["matrices"] as! [[String: Any]]).count == 14 && report["format"] as? String == "gptq")
        // eval reads it, and its perplexity is the in-process model's.
        let eval = try CLI.json(try CLI.succeed(["eval", "--model", out, "--data", CLI.text("sample.txt"), "--ctx", "32", "--json"]))
        let model = try LlamaModel(directory: out)
        #expect(model.layers[1][.down] is UniformLinear)
        #expect((eval["perplexity"] as! Double).isFinite)
    }

    @Test(builtBinary)
    func gptqCalibratesOnTextAndReportsEachMatrix() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("gptq")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", out, "--method", "gptq", "--bits", "3", "--group-size", "32",
                             "--act-order", "--calib", CLI.text("sample.txt"), "--samples", "4", "--seq-len", "32"])
        let report = try CLI.jsonFile(out + "/quant_report.json")
        let rows = report["matrices"] as! [[String: Any]]
        #expect(rows.count == 14 && rows.allSatisfy { ($0["gptq_loss"] as! Double) >= 0 && $0["damp"] as? Double == 0.1 })
        #expect((report["calibration"] as! [String: Any])["samples"] as? Int == 4)
        let config = try CLI.jsonFile(out + "/config.json")["quantization_config"] as! [String: Any]
        #expect(config["desc_act"] as? Bool == true && config["bits"] as? Int == 3)
        #expect(config["static_groups"] as? Bool == false && config["true_sequential"] as? Bool == true)
        let eval = try CLI.json(try CLI.succeed(["eval", "--model", out, "--data", CLI.text("sample.txt"), "--ctx", "32", "--json"]))
        #expect((eval["perplexity"] as! Double).isFinite)
    }

    /// --static-groups and --no-true-sequential reach the library (the codes are GPTQCalibration's
    /// with those options, which LQModelTests checks against AutoGPTQ) and quantization_config,
    /// quantize_config.json and quant_report.json say so.
    @Test(builtBinary)
    func staticGroupsAndNoTrueSequentialAreWrittenAsAutoGPTQDoes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("gptq")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", out, "--method", "gptq", "--bits", "4", "--group-size", "32",
                             "--act-order", "--static-groups", "--no-true-sequential", "--calib", CLI.text("sample.txt"), "--samples", "2",
                             "--seq-len", "32"])
        for file in ["config.json", "quantize_config.json"] {
            let json = try CLI.jsonFile(out + "/" + file)
            let q = file == "config.json" ? json["quantization_config"] as! [String: Any] : json
            #expect(q["static_groups"] as? Bool == true && q["true_sequential"] as? Bool == false && q["desc_act"] as? Bool == true, "\(file)")
        }
        let report = try CLI.jsonFile(out + "/quant_report.json")
        #expect(report["static_groups"] as? Bool == true && report["true_sequential"] as? Bool == false)
        let checkpoint = try Checkpoint(path: out)
        let settings = try GPTQFormat.Settings(modelConfig: try CLI.jsonFile(out + "/config.json"), path: out)!
        #expect(settings.staticGroups && !settings.trueSequential)
        let q = try GPTQFormat.load("model.layers.0.self_attn.q_proj", from: checkpoint, settings: settings)
        #expect(q.groupIndex == (0..<q.cols).map { Int32($0 / 32) }, "static groups keep g_idx in natural order under act-order")
        for option in ["--static-groups", "--no-true-sequential"] {
            let r = try CLI.run(["quantize", "--model", CLI.model, "--out", dir.file("never"), "--method", "rtn", option])
            #expect(r.status != 0 && r.stderr.contains("\(option) does not apply to --method rtn"), "\(option): \(r.stderr)")
        }
    }

    /// `dequantize` of a GPTQ/RTN checkpoint in either layout: every projection is the uniform
    /// kernels' dequantization (scale·(code − zero) through g_idx) bit for bit in f32 (the default),
    /// the other tensors are copied byte for byte, and the dense model computes the quantized one's logits.
    @Test(builtBinary, arguments: [["rtn", "gptq"], ["gptq", "lqlora"]])
    func dequantizeWritesTheUniformKernelsDequantization(_ c: [String]) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let (method, format) = (c[0], c[1])
        let q = dir.file("q"), dense = dir.file("dense")
        var args = ["--method", method, "--bits", "3", "--group-size", "32", "--asym", "--format", format]
        if method == "gptq" { args += ["--act-order", "--calib", CLI.text("sample.txt"), "--samples", "2", "--seq-len", "32"] }
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", q] + args)
        let line = try CLI.succeed(["dequantize", "--model", q, "--out", dense])
        #expect(line.contains("dequantized 14 matrices"), "\(line)")
        let quantized = try LlamaModel(directory: q), d = try Checkpoint(path: dense), source = try Checkpoint(path: q)
        for (l, layer) in quantized.layers.enumerated() {
            for p in Projection.allCases {
                let name = LinearSite.projection(layer: l, p).weightName
                #expect(try d.entry(name).dtype == .f32)
                #expect(try d.floatTensor(name).array == layer[p].denseWeight().array, "\(name)")
            }
        }
        for name in d.tensorNames where !name.contains("_proj") {
            #expect(Array(try d.locate(name).file.bytes(of: try d.entry(name))) == Array(try source.locate(name).file.bytes(of: try source.entry(name))))
        }
        let config = try CLI.jsonFile(dense + "/config.json")
        #expect(config["quantization_config"] == nil && config["torch_dtype"] as? String == "float32")
        let ids = [[3, 17, 42, 99, 5, 64, 21, 8]]
        let lq = quantized.forward(ids), ld = try LlamaModel(directory: dense).forward(ids)
        #expect(maxAbsDifference(lq, ld) <= 1e-5, "logits differ by \(maxAbsDifference(lq, ld))")
        let half = try CLI.succeed(["dequantize", "--model", q, "--out", dir.file("bf16"), "--dtype", "bf16"])
        let halfType = try Checkpoint(path: dir.file("bf16")).entry("model.layers.0.mlp.up_proj.weight").dtype
        #expect(half.contains("14 matrices") && halfType == .bf16)
    }

    @Test(builtBinary)
    func badInputIsRefusedByNameWithNothingWritten() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("never")
        let cases: [([String], String)] = [
            (["--method", "gptq", "--group-size", "32", "--calib", CLI.text("sample.txt"), "--seq-len", "100000"], "fewer than one calibration window"),
            (["--method", "gptq"], "--method gptq needs --calib"),
            (["--method", "rtn", "--bits", "5"], "--bits must be 2, 3, 4 or 8"),
            (["--method", "rtn", "--group-size", "0"], "--group-size must be -1 or positive"),
            (["--method", "rtn", "--group-size", "128"], "--group-size 128 is wider than"),
            (["--method", "rtn", "--budget", "3"], "--budget does not apply to --method rtn"),
            (["--method", "rtn", "--calib", CLI.text("sample.txt")], "--calib does not apply to --method rtn"),
            (["--method", "nf4", "--bits", "4"], "--bits does not apply to --method nf4"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["quantize", "--model", CLI.model, "--out", out] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(dir.contents().isEmpty, "\(args) left \(dir.contents())")
        }
    }

    /// GPTQ-LoRA: finetuning on a GPTQ base works unchanged; merging folds the adapter into the
    /// dequantized weights (dequant(W) + s·B·A: the model that was trained, not the original W);
    /// inspect lists the GPTQ modules. In both layouts.
    @Test(builtBinary, arguments: ["gptq", "lqlora"])
    func finetuneMergeAndInspectOnAGPTQBase(format: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let base = dir.file("rtn"), run = dir.file("run"), merged = dir.file("merged")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", base, "--method", "rtn", "--bits", "4", "--group-size", "32",
                             "--format", format])
        let yaml = """
        model: \(base)
        output_dir: \(run)
        data:
          train: \(CLI.text("sample.jsonl"))
          format: text
        lora:
          rank: 4
          alpha: 8
        train:
          seq_len: 32
          batch_size: 2
          max_steps: 3
          lr: 1.0e-2
          seed: 0
        """
        try yaml.write(toFile: dir.file("ft.yaml"), atomically: true, encoding: .utf8)
        _ = try CLI.succeed(["finetune", "--config", dir.file("ft.yaml")])
        let losses = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? CLI.json(String($0))["loss"] as? Double }
        #expect(losses.count == 3 && losses.allSatisfy(\.isFinite) && losses.last! < losses.first!, "losses \(losses)")

        _ = try CLI.succeed(["merge", "--model", base, "--adapter", run, "--out", merged, "--dtype", "f32"])
        let module = "model.layers.0.self_attn.q_proj"
        let checkpoint = try Checkpoint(path: base)
        let settings = try GPTQFormat.Settings(modelConfig: try checkpoint.config()!, path: base)!
        let w = try GPTQFormat.load(module, from: checkpoint, settings: settings).dequantized()
        let adapter = try SafeTensorsFile(path: run + "/adapter_model.safetensors")
        let a = try adapter.floatTensor(PEFTKeys.lora(module: module, matrix: .a)), b = try adapter.floatTensor(PEFTKeys.lora(module: module, matrix: .b))
        gemm(b.matrix, a.matrix, into: w.matrix, alpha: 2, beta: 1)
        let out = try Checkpoint(path: merged)
        #expect(maxAbsDifference(try out.floatTensor(module + ".weight"), w) <= 1e-6)
        #expect(try out.config()?["quantization_config"] == nil && !FileManager.default.fileExists(atPath: merged + "/quantize_config.json"))

        let inspect = try CLI.json(try CLI.succeed(["inspect", base, "--json"]))
        let rows = inspect["quantized"] as! [[String: Any]]
        let name = format == "gptq" ? "gptq-b4-g32-sym" : "uniform-b4-g32-fp16zero"
        #expect(rows.count == 14 && rows.allSatisfy { $0["config"] as? String == name })
        #expect(inspect["num_parameters"] as? Int == (try CLI.json(try CLI.succeed(["inspect", CLI.model, "--json"])))["num_parameters"] as? Int)
    }

    /// --format lqlora writes lqlora's own layout (fp16 `zeros` in place of `qzeros`, quant_method
    /// lqlora_uniform, no quantize_config.json) with the same codes, scales and g_idx as --format
    /// gptq; the metadata and the report say which; eval, generate and export load both, with the
    /// same logits bit for bit (symmetric codes, so v1's zero − 1 stores every zero point).
    @Test(builtBinary, arguments: ["rtn", "gptq"])
    func bothFormatsLoadWithIdenticalLogits(method: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        var args = ["--method", method, "--bits", "4", "--group-size", "32"]
        if method == "gptq" { args += ["--act-order", "--calib", CLI.text("sample.txt"), "--samples", "4", "--seq-len", "32"] }
        let outs = ["gptq", "lqlora"].map { dir.file($0) + "/model" }  // the same name: export writes it into the GGUF
        for (format, out) in zip(["gptq", "lqlora"], outs) {
            _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", out, "--format", format] + args)
        }
        let (gptq, lqlora) = (outs[0], outs[1])
        let configs = try outs.map { try CLI.jsonFile($0 + "/config.json")["quantization_config"] as! [String: Any] }
        #expect(configs[0]["quant_method"] as? String == "gptq" && configs[1]["quant_method"] as? String == "lqlora_uniform")
        #expect(configs[1]["zero_points"] as? String == "fp16" && configs[1]["desc_act"] as? Bool == (method == "gptq"))
        #expect(FileManager.default.fileExists(atPath: gptq + "/quantize_config.json") && !FileManager.default.fileExists(atPath: lqlora + "/quantize_config.json"))
        let reports = try outs.map { try CLI.jsonFile($0 + "/quant_report.json") }
        #expect(reports[0]["format"] as? String == "gptq" && reports[1]["format"] as? String == "lqlora")
        #expect(reports[1]["quant_method"] as? String == "lqlora_uniform" && reports[1]["method"] as? String == method)

        let module = "model.layers.1.self_attn.o_proj"
        let a = try Checkpoint(path: gptq), b = try Checkpoint(path: lqlora)
        #expect(a.contains(module + ".qzeros") && !a.contains(module + ".zeros"))
        let zerosType = try b.entry(module + ".zeros").dtype
        #expect(b.contains(module + ".zeros") && !b.contains(module + ".qzeros") && zerosType == .f16)
        let qa = try GPTQFormat.load(module, from: a, settings: try GPTQFormat.Settings(modelConfig: try a.config()!, path: gptq)!)
        let qb = try GPTQFormat.load(module, from: b, settings: try GPTQFormat.Settings(modelConfig: try b.config()!, path: lqlora)!)
        #expect(qa.codes == qb.codes && qa.scales == qb.scales && qa.zeros == qb.zeros && qa.groupIndex == qb.groupIndex)
        #expect(qa.sequentialGroups == (method == "rtn"))

        let ids = [[3, 17, 42, 99, 5, 64, 21, 8]]
        let la = try LlamaModel(directory: gptq).forward(ids), lb = try LlamaModel(directory: lqlora).forward(ids)
        #expect(la.array == lb.array, "logits differ by \(maxAbsDifference(la, lb))")
        let evals = try outs.map { try CLI.json(try CLI.succeed(["eval", "--model", $0, "--data", CLI.text("sample.txt"), "--ctx", "32", "--json"])) }
        #expect(evals[0]["perplexity"] as? Double == evals[1]["perplexity"] as? Double)
        let texts = try outs.map { try CLI.succeed(["generate", "--model", $0, "--prompt", "the", "--max-tokens", "8", "--temperature", "0"]) }
        #expect(texts[0] == texts[1] && !texts[0].isEmpty)
        for (out, name) in zip(outs, ["a", "b"]) { _ = try CLI.succeed(["export", "--model", out, "--out", dir.file(name + ".gguf"), "--type", "f32"]) }
        #expect(FileManager.default.contents(atPath: dir.file("a.gguf")) == FileManager.default.contents(atPath: dir.file("b.gguf")))
    }

    /// `merge --requantize` is quantize's own code on the merged model: on a GPTQ base with PEFT's
    /// adapter it writes exactly what `merge --dtype f32` then `quantize --method M` write (every
    /// tensor byte for byte, the same quantization_config), in either layout.
    @Test(builtBinary, arguments: [("rtn", "gptq"), ("gptq", "lqlora")])
    func mergeRequantizeIsMergeThenQuantize(method: String, format: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let base = dir.file("base"), dense = dir.file("dense"), twoStep = dir.file("two-step"), oneStep = dir.file("one-step")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", base, "--method", "rtn", "--bits", "4", "--group-size", "32"])
        var args = ["--bits", "3", "--group-size", "32", "--asym", "--format", format]
        if method == "gptq" { args += ["--act-order", "--calib", CLI.text("sample.txt"), "--samples", "4", "--seq-len", "32", "--seed", "3"] }
        _ = try CLI.succeed(["merge", "--model", base, "--adapter", CLI.adapter, "--out", dense, "--dtype", "f32"])
        _ = try CLI.succeed(["quantize", "--model", dense, "--out", twoStep, "--method", method] + args)
        let printed = try CLI.succeed(["merge", "--model", base, "--adapter", CLI.adapter, "--out", oneStep, "--dtype", "f32", "--requantize", method] + args)
        #expect(printed.contains("merged 14 adapted weights") && printed.contains("\(method): 14 matrices to 3 bits"), "\(printed)")
        let (a, b) = (try Checkpoint(path: twoStep), try Checkpoint(path: oneStep))
        #expect(a.tensorNames.sorted() == b.tensorNames.sorted())
        for name in a.tensorNames {
            let (fa, ea) = try a.locate(name), (fb, eb) = try b.locate(name)
            #expect(ea.dtype == eb.dtype && ea.shape == eb.shape && Array(fa.bytes(of: ea)) == Array(fb.bytes(of: eb)), "\(name) differs")
        }
        for file in ["config.json", "quantize_config.json"] {
            #expect(FileManager.default.contents(atPath: twoStep + "/" + file) == FileManager.default.contents(atPath: oneStep + "/" + file), "\(file) differs")
        }
        let report = try CLI.jsonFile(oneStep + "/quant_report.json")
        #expect(report["method"] as? String == method && (report["matrices"] as! [[String: Any]]).count == 14)
        #expect(FileManager.default.fileExists(atPath: oneStep + "/quantize_config.json") == (format == "gptq"))
        // The requantized model is the merged one quantized, not the base: eval reads it.
        let eval = try CLI.json(try CLI.succeed(["eval", "--model", oneStep, "--data", CLI.text("sample.txt"), "--ctx", "32", "--json"]))
        #expect((eval["perplexity"] as! Double).isFinite)
    }

    @Test(builtBinary)
    func mergeRequantizeRefusesOptionsByNameWithNothingWritten() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let base = dir.file("base")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", base, "--method", "rtn", "--bits", "4", "--group-size", "32"])
        let out = dir.file("never")
        let cases: [([String], String)] = [
            (["--bits", "4"], "--bits applies only with --requantize gptq|rtn"),
            (["--format", "lqlora"], "--format applies only with --requantize gptq|rtn"),
            (["--requantize", "rtn", "--calib", CLI.text("sample.txt")], "--calib does not apply to --requantize rtn"),
            (["--requantize", "gptq"], "--requantize gptq needs --calib"),
            (["--requantize", "rtn", "--bits", "5"], "--bits must be 2, 3, 4 or 8"),
            (["--requantize", "rtn", "--group-size", "128"], "--group-size 128 is wider than"),
            (["--requantize", "gptq", "--group-size", "32", "--calib", CLI.text("sample.txt"), "--seq-len", "100000"], "fewer than one calibration window"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["merge", "--model", base, "--adapter", CLI.adapter, "--out", out] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(dir.contents() == ["base"], "\(args) left \(dir.contents())")
        }
    }
}
