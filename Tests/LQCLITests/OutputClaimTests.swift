import Foundation
import LQFormats
import Testing

/// Before a command writes an output: the checkpoint it reads is checked against its config.json,
/// the output path is claimed (a second run is refused) and must be a directory; numbers on the
/// command line may be negative and are then refused by name, not mistaken for options.
struct OutputClaimTests {
    static func entries(_ dir: TemporaryDirectory) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    @Test(builtBinary)
    func aSecondRunWritingTheSameOutputIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let out = dir.file("q")
        let held = try OutputLock(for: out)
        let refused = try CLI.run(["quantize", "--model", CLI.model, "--out", out, "--method", "nf4", "--overwrite"])
        #expect(refused.status == 1 && refused.stderr.contains("another lqlora run (pid \(getpid())) is writing \(out)"), "\(refused.stderr)")
        #expect(try Self.entries(dir) == [".q.lock"])
        held.release()
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", out, "--method", "nf4"])
        // Finished: no lock file and no staging directory beside the output.
        #expect(try Self.entries(dir) == ["q"])
        #expect(throws: OutputLockError.busy(path: out, pid: getpid())) {
            let first = try OutputLock(for: out)
            defer { first.release() }
            _ = try OutputLock(for: out)
        }
    }

    @Test(builtBinary)
    func anOutputPathThatIsAFileIsNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir.file("file")))
        for extra in [[], ["--overwrite"]] {
            let r = try CLI.run(["quantize", "--model", CLI.model, "--out", dir.file("file"), "--method", "nf4"] + extra)
            #expect(r.status == 1 && r.stderr.contains("\(dir.file("file")) is a file; the output is a directory"), "\(r.stderr)")
        }
        #expect(try Self.entries(dir) == ["file"] && (try String(contentsOfFile: dir.file("file"), encoding: .utf8)) == "keep")
    }

    /// A copy of the fixture model with `change` applied to its tensors (and config.json).
    static func variant(_ dir: TemporaryDirectory, _ name: String, config: ((inout [String: Any]) -> Void)? = nil,
                        tensors change: (inout [PendingTensor], SafeTensorsFile) throws -> Void) throws -> String {
        let path = dir.file(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let source = try SafeTensorsFile(path: CLI.model + "/model.safetensors")
        var tensors = source.entries.map { ModelFiles.copied($0, from: source) }
        try change(&tensors, source)
        try SafeTensorsWriter.write(tensors, to: path + "/model.safetensors")
        var json = try CLI.jsonFile(CLI.model + "/config.json")
        if let config {
            config(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path + "/config.json"))
        } else {
            try FileManager.default.copyItem(atPath: CLI.model + "/config.json", toPath: path + "/config.json")
        }
        try FileManager.default.copyItem(atPath: CLI.model + "/tokenizer.json", toPath: path + "/tokenizer.json")
        return path
    }

    @Test(builtBinary)
    func quantizeChecksTheCheckpointAgainstItsConfigBeforeWriting() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let up = "model.layers.0.mlp.up_proj.weight"
        let missing = try Self.variant(dir, "missing") { tensors, _ in tensors.removeAll { $0.name == up } }
        let misshapen = try Self.variant(dir, "misshapen") { tensors, source in
            let entry = source.entries.first { $0.name == up }!
            tensors.removeAll { $0.name == up }
            tensors.append(PendingTensor(name: up, dtype: .f32, shape: [entry.shape[0] - 1, entry.shape[1]]) { $0.initializeMemory(as: UInt8.self, repeating: 0) })
        }
        let gpt2 = try Self.variant(dir, "gpt2", config: { $0["model_type"] = "gpt2" }) { _, _ in }
        let noConfig = try Self.variant(dir, "noconfig") { _, _ in }
        try FileManager.default.removeItem(atPath: noConfig + "/config.json")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", dir.file("nf4"), "--method", "nf4"])
        let cases: [(String, String)] = [
            (missing, "\(missing)/model.safetensors: missing weight '\(up)'"),
            (misshapen, "weight '\(up)' has shape"),
            (gpt2, "model_type 'gpt2' (supported: llama, mistral, qwen2, bert) is not supported"),
            (noConfig, "\(noConfig)/config.json: a model directory without config.json"),
            (dir.file("nf4"), "quantizing weight 'model.layers.0.self_attn.q_proj.weight' stored as U8 (an already quantized checkpoint?"),
        ]
        let before = try Self.entries(dir)
        for (model, message) in cases {
            for method in [["--method", "nf4"], ["--method", "rtn"], ["--method", "qlora-ilp", "--budget", "3"]] {
                let r = try CLI.run(["quantize", "--model", model, "--out", dir.file("out")] + method)
                #expect(r.status == 1 && r.stderr.contains(message), "\(model) \(method): \(r.stderr)")
            }
        }
        // Nothing was written: no output, no staging directory, no lock file.
        #expect(try Self.entries(dir) == before)
    }

    @Test(builtBinary)
    func negativeNumbersAreRefusedByNameNotTakenForOptions() throws {
        let text = CLI.text("sample.txt")
        let cases: [([String], String)] = [
            (["generate", "--model", CLI.model, "--prompt", "a", "--temperature", "-1"], "--temperature must be finite and ≥ 0"),
            (["generate", "--model", CLI.model, "--prompt", "a", "--max-tokens", "-2"], "--max-tokens must be at least 1"),
            (["eval", "--model", CLI.model, "--data", text, "--max-tokens", "-3"], "--max-tokens must be at least 2"),
            (["eval", "--model", CLI.model, "--data", text, "--max-chars", "-3"], "--max-chars must be at least 1"),
            (["eval", "--model", CLI.model, "--data", text, "--threads", "-2"], "--threads must be at least 1"),
            (["tokenize", "--model", CLI.model, "--text", "a", "--max-chars", "-1"], "--max-chars must not be negative"),
            (["quantize", "--model", CLI.model, "--out", "/nonexistent/x", "--method", "nf4", "--block-size", "-64"], "--block-size must be"),
            (["quantize", "--model", CLI.model, "--out", "/nonexistent/x", "--method", "lq-lora", "--budget", "-3"], "--budget -3.000 is below"),
        ]
        for (arguments, message) in cases {
            let r = try CLI.run(arguments)
            #expect(r.status == 64 && r.stderr.contains(message) && !r.stderr.contains("Missing value"), "\(arguments): \(r.stderr)")
        }
        // -1 is a value GPTQ's group size takes (one group per row).
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", dir.file("rtn"), "--method", "rtn", "--group-size", "-1"])
        #expect(try CLI.jsonFile(dir.file("rtn") + "/config.json")["quantization_config"].flatMap { ($0 as? [String: Any])?["group_size"] as? Int } == -1)
    }
}
