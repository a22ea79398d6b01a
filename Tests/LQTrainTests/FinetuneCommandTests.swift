import Foundation
import LQFormats
import LQTestSupport
import LQTrain
import Testing

/// `lqlora finetune` as a user runs it: the built binary, a YAML file, Ctrl-C-style interruption and --resume.
struct FinetuneCommandTests {
    static let binary = BuiltCommand.path

    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try BuiltCommand.run(arguments + ["--threads", "2"])
    }

    /// The "loss" fields of metrics.jsonl as written (text, so equality is bit-for-bit).
    static func losses(_ dir: String) throws -> [String] {
        try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "\"loss\": ") else { return nil }
            return String(line[r.upperBound...].prefix { $0 != "," && $0 != "}" })
        }
    }

    /// `config` run into `directory`, interrupted after step 3 (as Ctrl-C does) and resumed: its losses.
    static func interruptedAndResumed(_ config: String, into directory: String) throws -> [String] {
        let stopped = try run(["finetune", "--config", config, "--set", "output_dir=\(directory)", "--stop-after", "3"])
        #expect(stopped.status == 130 && stopped.stderr.contains("interrupted at step 3; resume with"), "\(stopped.stderr)")
        let resumed = try run(["finetune", "--config", config, "--set", "output_dir=\(directory)", "--resume", directory])
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming after step 3"), "\(resumed.stderr)")
        return try losses(directory)
    }

    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func resumedRunLossesAreBitwiseThoseOfAnUninterruptedRun() throws {
        let ws = try Workspace()
        let config = ws.root + "/config.yaml"
        try ws.yaml().write(toFile: config, atomically: true, encoding: .utf8)
        let straight = try Self.run(["finetune", "--config", config])
        #expect(straight.status == 0, "\(straight.stderr)")
        #expect(straight.stdout.contains("adapter written to"))
        let reference = try Self.losses(ws.root + "/run")
        #expect(reference.count == 6)
        // The same output_dir again: refused (its checkpoints and metrics would mix), or started afresh.
        let again = try Self.run(["finetune", "--config", config])
        #expect(again.status == 1 && again.stderr.contains("holds an earlier run") && again.stderr.contains("--overwrite"), "\(again.stderr)")
        #expect(try Self.losses(ws.root + "/run") == reference)
        let fresh = try Self.run(["finetune", "--config", config, "--overwrite"])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(try Self.losses(ws.root + "/run") == reference)

        #expect(try Self.interruptedAndResumed(config, into: ws.root + "/run2") == reference)
        let a = try Data(contentsOf: URL(fileURLWithPath: ws.root + "/run/adapter_model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: ws.root + "/run2/adapter_model.safetensors"))
        #expect(a == b)
    }

    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func configMistakesStopBeforeAnythingStarts() throws {
        let ws = try Workspace()
        let config = ws.root + "/config.yaml"
        try (ws.yaml() + "\nlearning_rate: 3\n").write(toFile: config, atomically: true, encoding: .utf8)
        let r = try Self.run(["finetune", "--config", config])
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(config): unknown key 'learning_rate'"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/run"))
        let typo = try Self.run(["finetune", "--config", ws.root + "/missing.yaml"])
        #expect(typo.status == 2 && typo.stderr.contains("missing.yaml: cannot be read"))
        let override = try Self.run(["finetune", "--config", config.replacingOccurrences(of: "config.yaml", with: "none.yaml"), "--schema"])
        #expect(override.status == 0 && override.stdout.contains("train:\n  seq_len: 512"))
    }
}

extension FinetuneCommandTests {
    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func fisherFileFeedsTheDataAwareQuantizerAndFinetuning() throws {
        let ws = try Workspace()
        let fisher = ws.root + "/fisher.safetensors"
        let f = try Self.run(["fisher", "--model", ws.root + "/model", "--data", ws.root + "/train.jsonl", "--samples", "6", "--seq-len", "32", "--out", fisher])
        #expect(f.status == 0 && f.stdout.contains("Fisher of 14 weights over 6 examples"), "\(f.stderr)")
        let q = try Self.run(["quantize", "--model", ws.root + "/model", "--out", ws.root + "/lq", "--method", "lq-lora", "--budget", "3.0",
                              "--rank", "4", "--grid", "compact", "--fisher", fisher])
        #expect(q.status == 0, "\(q.stderr)")
        // LQ-LoRA's base plus its adapter initialisation finetune like any other model.
        let config = ws.root + "/lq.yaml"
        try ws.yaml("adapter_init: \(ws.root)/lq/adapter").replacingOccurrences(of: "model: \(ws.root)/model", with: "model: \(ws.root)/lq")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let t = try Self.run(["finetune", "--config", config, "--set", "train.max_steps=2", "--set", "output_dir=\(ws.root)/lqrun"])
        #expect(t.status == 0, "\(t.stderr)")
        #expect(FileManager.default.fileExists(atPath: ws.root + "/lqrun/summary.json"))
    }
}

extension FinetuneCommandTests {
    /// L4Q and LREC as a user runs them: the quantized model L4Q writes evaluates with `eval`, and
    /// an LREC run distilled from the dense model logs its KL; mistakes exit 1 naming the cause.
    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func l4qWritesAModelEvalRunsAndLRECLogsItsKL() throws {
        let ws = try Workspace()
        let config = ws.root + "/l4q.yaml"
        try ws.yaml("l4q: {bits: 4, group_size: 16}").write(toFile: config, atomically: true, encoding: .utf8)
        let t = try Self.run(["finetune", "--config", config, "--set", "lora.dropout=0", "--set", "train.max_steps=2"])
        #expect(t.status == 0 && t.stdout.contains("quantized model written to \(ws.root)/run/model"), "\(t.stderr)")
        #expect(t.stderr.contains("L4Q: LoRA through a learned 4-bit quantizer, groups of 16"))
        try String(repeating: "The sky is blue. Bees make honey. A dog barks. ", count: 20).write(toFile: ws.root + "/eval.txt", atomically: true, encoding: .utf8)
        let e = try Self.run(["eval", "--model", ws.root + "/run/model", "--data", ws.root + "/eval.txt", "--ctx", "32", "--json"])
        #expect(e.status == 0 && e.stdout.contains("\"perplexity\""), "\(e.stderr)")
        let record = try Self.run(["eval", "--model", ws.root + "/run/model", "--data", ws.root + "/train.jsonl"])
        #expect(record.status == 1 && record.stderr.contains("train.jsonl:1: field \"text\" is missing"), "\(record.stderr)")
        let lrec = ws.root + "/lrec.yaml"
        try ws.yaml("distill: {teacher: \(ws.root)/model, ce_weight: 2.0}").write(toFile: lrec, atomically: true, encoding: .utf8)
        let d = try Self.run(["finetune", "--config", lrec, "--set", "output_dir=\(ws.root)/lrec", "--set", "train.max_steps=2"])
        #expect(d.status == 0 && d.stderr.contains("distilling from \(ws.root)/model"), "\(d.stderr)")
        #expect(try String(contentsOfFile: ws.root + "/lrec/metrics.jsonl", encoding: .utf8).contains("\"kl_per_token\": "))
        let again = try Self.run(["finetune", "--config", config, "--set", "lora.dropout=0", "--set", "model=\(ws.root)/run/model",
                                  "--set", "output_dir=\(ws.root)/twice"])
        #expect(again.status == 1 && again.stderr.contains("is already quantized; L4Q quantizes a dense"), "\(again.stderr)")
    }
}

extension FinetuneCommandTests {
    /// l4q.format gptq as a user runs it: the run ends with the zero points' summary line, the model
    /// carries the quantization_config and quantize_config.json that `quantize --format gptq` writes
    /// for the same settings, and eval, generate, inspect and dequantize read it; a misspelt format
    /// exits 2 (a configuration error) naming the key before anything trains.
    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func l4qWritesAutoGPTQsLayoutThatEveryCommandReads() throws {
        let ws = try Workspace()
        let config = ws.root + "/l4q.yaml", model = ws.root + "/run/model"
        try ws.yaml("l4q: {bits: 4, group_size: 16, format: gptq}").write(toFile: config, atomically: true, encoding: .utf8)
        let t = try Self.run(["finetune", "--config", config, "--set", "lora.dropout=0", "--set", "train.max_steps=2"])
        #expect(t.status == 0 && t.stdout.contains("quantized model written to \(model) (4-bit codes, integer zero points in AutoGPTQ's layout"), "\(t.stderr)")
        #expect(t.stdout.contains("gptq layout: integer zero points; dequantized weights moved by RMS 0, max 0 (relative 0) from the trained model"), "\(t.stdout)")
        #expect(t.stderr.contains("groups of 16; integer zero points, written in AutoGPTQ's layout"), "\(t.stderr)")
        let rtn = ws.root + "/rtn"
        let q = try Self.run(["quantize", "--model", ws.root + "/model", "--out", rtn, "--method", "rtn", "--bits", "4", "--group-size", "16", "--asym", "--format", "gptq"])
        #expect(q.status == 0, "\(q.stderr)")
        func json(_ path: String) throws -> NSDictionary { try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! NSDictionary }
        #expect(try json(model + "/quantize_config.json") == json(rtn + "/quantize_config.json"))
        #expect(try json(model + "/config.json")["quantization_config"] as? NSDictionary == json(rtn + "/config.json")["quantization_config"] as? NSDictionary)
        let quantization = try json(model + "/config.json")["quantization_config"] as? NSDictionary
        #expect(quantization?["sym"] as? Bool == false && quantization?["quant_method"] as? String == "gptq")
        try String(repeating: "The sky is blue. Bees make honey. A dog barks. ", count: 20).write(toFile: ws.root + "/eval.txt", atomically: true, encoding: .utf8)
        let e = try Self.run(["eval", "--model", model, "--data", ws.root + "/eval.txt", "--ctx", "32", "--json"])
        #expect(e.status == 0 && e.stdout.contains("\"perplexity\""), "\(e.stderr)")
        let g = try Self.run(["generate", "--model", model, "--prompt", "The sky is", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")
        let i = try BuiltCommand.run(["inspect", model])
        #expect(i.status == 0 && i.stdout.contains("gptq"), "\(i.stdout) \(i.stderr)")
        let d = try BuiltCommand.run(["dequantize", "--model", model, "--out", ws.root + "/dense"])
        #expect(d.status == 0 && d.stdout.contains("dequantized 14 matrices"), "\(d.stdout) \(d.stderr)")
        let bad = try Self.run(["finetune", "--config", config, "--set", "lora.dropout=0", "--set", "l4q.format=gptp", "--set", "output_dir=\(ws.root)/bad"])
        #expect(bad.status == 2 && bad.stderr.contains("'l4q.format' must be one of gptq, lqlora (got gptp); did you mean 'gptq'?"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/bad"))
        let schema = try Self.run(["finetune", "--schema"])
        #expect(schema.stdout.contains("  format: lqlora") && schema.stdout.contains("gptq: AutoGPTQ's v1 layout"), "\(schema.stdout)")
    }
}

extension FinetuneCommandTests {
    /// Q-GaLore's state (codes, projections and their schedules, 8-bit moments) resumes bit for
    /// bit: the same losses and the same model bytes as a run never interrupted.
    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func qgaloreResumesBitwise() throws {
        let ws = try Workspace()
        let config = ws.root + "/qgalore.yaml"
        try QGaLoreTrainerTests.yaml(ws).write(toFile: config, atomically: true, encoding: .utf8)
        let straight = try Self.run(["finetune", "--config", config])
        #expect(straight.status == 0 && straight.stdout.contains("model written to \(ws.root)/run/model"), "\(straight.stderr)")
        #expect(straight.stderr.contains("Q-GaLore: 8-bit weights in groups of 256 (stochastic rounding), 4-bit projections; rank 4"), "\(straight.stderr)")
        let reference = try Self.losses(ws.root + "/run")
        #expect(reference.count == 6)
        #expect(try Self.interruptedAndResumed(config, into: ws.root + "/run2") == reference)
        let a = try Data(contentsOf: URL(fileURLWithPath: ws.root + "/run/model/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: ws.root + "/run2/model/model.safetensors"))
        #expect(a == b)
        let schema = try Self.run(["finetune", "--schema"])
        #expect(schema.stdout.contains("method: lora") && schema.stdout.contains("qgalore:\n  rank: 128"), "\(schema.stdout)")
    }
}

/// output_dir claimed for one run: a file there, a second run, a killed run's leftovers.
extension FinetuneCommandTests {
    static func hiddenOrPartial(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(".") || $0.contains(".partial") }
    }

    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func outputDirIsClaimedForOneRun() throws {
        let ws = try Workspace()
        let config = ws.root + "/config.yaml"
        try ws.yaml().write(toFile: config, atomically: true, encoding: .utf8)
        try Data().write(to: URL(fileURLWithPath: ws.root + "/run"))
        let file = try Self.run(["finetune", "--config", config])
        #expect(file.status == 1 && file.stderr.contains("output_dir \(ws.root)/run is a file; it must be a directory"), "\(file.stderr)")
        try FileManager.default.removeItem(atPath: ws.root + "/run")

        let held = try OutputLock(for: ws.root + "/run")
        let busy = try Self.run(["finetune", "--config", config])
        #expect(busy.status == 1 && busy.stderr.contains("another lqlora run (pid \(getpid())) is writing \(ws.root)/run"), "\(busy.stderr)")
        held.release()

        // A killed run's half-written checkpoint, a half-deleted --overwrite beside output_dir
        // (its pid long gone): an output_dir holding only those is no earlier run, and they go.
        try FileManager.default.createDirectory(atPath: ws.root + "/run/checkpoint-4.partial", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: ws.root + "/.run.partial-2147480000", withIntermediateDirectories: true)
        let ok = try Self.run(["finetune", "--config", config])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(Self.hiddenOrPartial(ws.root + "/run").isEmpty && Self.hiddenOrPartial(ws.root).isEmpty,
                "\(Self.hiddenOrPartial(ws.root + "/run")) \(Self.hiddenOrPartial(ws.root))")
        let overwritten = try Self.run(["finetune", "--config", config, "--overwrite"])
        #expect(overwritten.status == 0 && Self.hiddenOrPartial(ws.root).isEmpty, "\(overwritten.stderr)")
    }

    /// finetune killed (SIGKILL) at points through its run: every checkpoint left is complete, the
    /// adapter is absent or complete, and --resume continues from the newest checkpoint, removing
    /// what the killed run left half-written.
    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func killedFinetuneLeavesCompleteCheckpointsAndResumes() throws {
        let ws = try Workspace()
        let config = ws.root + "/config.yaml", out = ws.root + "/run"
        try ws.yaml().replacingOccurrences(of: "max_steps: 6", with: "max_steps: 1200").write(toFile: config, atomically: true, encoding: .utf8)
        func complete(_ dir: String) throws {
            let state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/trainer_state.json"))) as! [String: Any]
            #expect(dir.hasSuffix("checkpoint-\(state["step"] as! Int)"))
            for file in ["adapter_model.safetensors", "optimizer.safetensors"] { _ = try SafeTensorsFile(path: dir + "/" + file) }
            _ = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json")))
        }
        var resumed = 0
        for (round, delay) in [0.3, 0.7, 1.2, 1.8].enumerated() {
            try BuiltCommand.runKilled(["finetune", "--config", config, "--threads", "2"] + (round == 0 ? [] : ["--resume", out]), after: delay)
            for step in Trainer.checkpoints(in: out) { try complete(out + "/checkpoint-\(step)") }
            if FileManager.default.fileExists(atPath: out + "/adapter_model.safetensors") { try complete(out) }
            if !Trainer.checkpoints(in: out).isEmpty { resumed += 1 }
        }
        #expect(resumed > 0, "no run lived long enough to write a checkpoint")
        let last = try Self.run(["finetune", "--config", config, "--resume", out])
        #expect(last.status == 0 && last.stdout.contains("adapter written to"), "\(last.stderr)")
        #expect(Self.hiddenOrPartial(out).isEmpty && Self.hiddenOrPartial(ws.root).isEmpty)
        #expect(try Self.losses(out).count == 1200)
    }
}
