import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import LQTrain
import Testing

/// `mpirun -np N lqlora finetune` against one process at the same effective batch (the oracle):
/// the Workspace's tiny model with adapter dropout 0.1, so the dropout streams are checked too.
struct DataParallelTests {
    /// A step's micro-batches sum in another order across ranks (each rank's partial sum, then
    /// MPI's sum of those), so after the first update the runs agree to fp32 rounding, not bits.
    static let tolerance = 1e-5

    static func finetune(_ ws: Workspace, ranks: Int, into run: String, _ extra: [String] = [], config: String = "config.yaml",
                         environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let arguments = ["finetune", "--config", ws.root + "/" + config, "--set", "output_dir=\(ws.root)/\(run)", "--threads", "1"] + extra
        return ranks == 1 ? try BuiltCommand.run(arguments, environment: environment)
                          : try MPIRun.run(ranks: ranks, arguments, environment: environment, timeout: 120)
    }

    static func workspace() throws -> Workspace {
        let ws = try Workspace()
        try ws.yaml().write(toFile: ws.root + "/config.yaml", atomically: true, encoding: .utf8)
        return ws
    }

    static func adapter(_ dir: String) throws -> [String: [Float]] {
        let file = try SafeTensorsFile(path: dir + "/adapter_model.safetensors")
        return try Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, try file.floatTensor($0).array) })
    }

    /// The largest difference between two adapters relative to the largest weight, and whether their names match.
    static func adapterDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
        guard a.keys.sorted() == b.keys.sorted() else { return .infinity }
        let scale = a.values.flatMap { $0 }.map { abs(Double($0)) }.max() ?? 1
        return a.keys.map { k in zip(a[k]!, b[k]!).map { abs(Double($0) - Double($1)) }.max() ?? 0 }.max()! / scale
    }

    /// train and validation losses by step, as metrics.jsonl has them.
    static func losses(_ dir: String) throws -> (train: [Int: Double], valid: [Int: Double]) {
        var train: [Int: Double] = [:], valid: [Int: Double] = [:]
        for line in try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let step = obj["step"] as! Int
            if let l = obj["loss"] as? Double { train[step] = l }
            if let l = obj["val_loss"] as? Double { valid[step] = l }
        }
        return (train, valid)
    }

    static func expectAgree(_ dir: String, with reference: String, _ label: String) throws {
        let (a, b) = (try losses(dir), try losses(reference))
        #expect(a.train.keys.sorted() == b.train.keys.sorted() && a.valid.keys.sorted() == b.valid.keys.sorted(), "\(label): steps")
        // The first step computes every micro-batch as one process does and adds the losses in its order: bit for bit.
        #expect(a.train[1] == b.train[1], "\(label): step 1 loss \(a.train[1] ?? .nan) vs \(b.train[1] ?? .nan)")
        for (step, loss) in b.train { #expect(abs(a.train[step]! - loss) <= tolerance * loss, "\(label): step \(step) loss \(a.train[step]!) vs \(loss)") }
        for (step, loss) in b.valid { #expect(abs(a.valid[step]! - loss) <= tolerance * loss, "\(label): step \(step) val_loss \(a.valid[step]!) vs \(loss)") }
        let d = adapterDifference(try adapter(dir), try adapter(reference))
        #expect(d <= tolerance, "\(label): adapters differ by \(d) of the largest weight")
        print("\(label): largest adapter difference \(d) of the largest weight")
    }

    @Test(.enabled(if: MPIRun.enabled, "mpirun or the lqlora binary is missing (install openmpi-bin; LQLORA_REQUIRE_MPI=1 makes this a failure)"))
    func ranksTrainWhatOneProcessTrainsAtTheSameEffectiveBatch() throws {
        // grad_accum 2 over 2 ranks (one micro-batch each), 6 over 3 (two each: the generator jumps mid-step).
        for (ranks, accum) in [(2, 2), (3, 6)] {
            let ws = try Self.workspace(), batch = ["--set", "train.grad_accum=\(accum)"]
            let one = try Self.finetune(ws, ranks: 1, into: "one", batch)
            #expect(one.status == 0, "\(one.stderr)")
            let many = try Self.finetune(ws, ranks: ranks, into: "many", batch)
            #expect(many.status == 0, "\(many.stderr)")
            #expect(many.stderr.contains("data-parallel over \(ranks) ranks: \(accum / ranks) micro-batch"), "\(many.stderr)")
            // Only rank 0 speaks and writes.
            #expect(!many.stderr.contains("[rank "), "\(many.stderr)")
            #expect(many.stdout.components(separatedBy: "adapter written to").count == 2, "\(many.stdout)")
            #expect(try Self.losses(ws.root + "/many").train.count == 6)
            #expect(Trainer.checkpoints(in: ws.root + "/many") == Trainer.checkpoints(in: ws.root + "/one"))
            try Self.expectAgree(ws.root + "/many", with: ws.root + "/one", "-np \(ranks), grad_accum \(accum)")
        }
    }

    @Test(.enabled(if: MPIRun.enabled, "mpirun or the lqlora binary is missing (install openmpi-bin; LQLORA_REQUIRE_MPI=1 makes this a failure)"))
    func anInterruptedOrKilledJobResumesWithAnyRankCountThatDividesTheStep() throws {
        let ws = try Self.workspace()
        let straight = try Self.finetune(ws, ranks: 2, into: "straight")
        #expect(straight.status == 0, "\(straight.stderr)")
        // Every rank stops after step 3 together (as Ctrl-C does); two ranks resume it bit for bit.
        let stopped = try Self.finetune(ws, ranks: 2, into: "stopped", ["--stop-after", "3"])
        #expect(stopped.status != 0 && stopped.stderr.contains("interrupted at step 3; resume with"), "\(stopped.stderr)")
        let resumed = try Self.finetune(ws, ranks: 2, into: "stopped", ["--resume", ws.root + "/stopped"])
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming after step 3"), "\(resumed.stderr)")
        #expect(try Self.losses(ws.root + "/stopped").train == Self.losses(ws.root + "/straight").train)
        #expect(try Self.adapter(ws.root + "/stopped") == Self.adapter(ws.root + "/straight"))

        // Rank 1 killed after step 3: rank 0 is stopped with a message, no hang; checkpoint-2 resumes, here as one process.
        let start = Date()
        let killed = try Self.finetune(ws, ranks: 2, into: "killed", environment: ["LQLORA_TEST_RANK_DIES": "1:3"])
        #expect(killed.status != 0)
        #expect(Date().timeIntervalSince(start) < 60)
        #expect(killed.stderr.contains("rank 0 of 2 stopped by the MPI launcher") || killed.stderr.contains("exited on signal 9"), "\(killed.stderr)")
        #expect(Trainer.checkpoints(in: ws.root + "/killed").last == 2)
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/killed/adapter_model.safetensors"))
        let again = try Self.finetune(ws, ranks: 1, into: "killed", ["--resume", ws.root + "/killed"])
        #expect(again.status == 0 && again.stderr.contains("resuming after step 2"), "\(again.stderr)")
        try Self.expectAgree(ws.root + "/killed", with: ws.root + "/straight", "killed at step 3, resumed as one process")
    }

    @Test(.enabled(if: MPIRun.enabled, "mpirun or the lqlora binary is missing (install openmpi-bin; LQLORA_REQUIRE_MPI=1 makes this a failure)"))
    func whatCannotSplitIsRefusedByName() throws {
        let ws = try Self.workspace()
        let uneven = try Self.finetune(ws, ranks: 2, into: "uneven", ["--set", "train.grad_accum=3"])
        #expect(uneven.status != 0 && uneven.stderr.contains("train.grad_accum is 3: a step's 3 micro-batches cannot be dealt evenly to 2 ranks"), "\(uneven.stderr)")
        try ws.yaml().replacingOccurrences(of: "lora: {rank: 4, alpha: 8, dropout: 0.1}", with: "method: full")
            .replacingOccurrences(of: "grad_accum: 2", with: "grad_accum: 1").write(toFile: ws.root + "/full.yaml", atomically: true, encoding: .utf8)
        let full = try Self.finetune(ws, ranks: 2, into: "full", config: "full.yaml")
        #expect(full.status != 0 && full.stderr.contains("method full updates each matrix inside the backward pass"), "\(full.stderr)")
        let eval = try MPIRun.run(ranks: 2, ["eval", "--model", ws.root + "/model", "--data", ws.root + "/train.jsonl"], timeout: 60)
        #expect(eval.status != 0 && eval.stderr.contains("lqlora eval runs as one process"), "\(eval.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/uneven") && !FileManager.default.fileExists(atPath: ws.root + "/full"))
    }
}

/// `mpirun -np N lqlora quantize --method lq-lora`: the error table and the decompositions split
/// across ranks, rank 0 writing; the output and the --ilp-cache file against one process's, byte for byte.
struct DistributedQuantizeTests {
    /// Every file of an output directory; quant_report.json without its timings and cache path.
    static func files(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let fm = FileManager.default
        for path in fm.subpaths(atPath: dir) ?? [] {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dir + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            var data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + path))
            if path == "quant_report.json" {
                var report = try JSONSerialization.jsonObject(with: data) as! [String: Any]
                report["seconds"] = nil
                var table = report["error_table"] as! [String: Any]
                table["cache"] = nil  // each run here names its own --ilp-cache
                report["error_table"] = table
                data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            }
            out[path] = data
        }
        return out
    }

    @Test(.enabled(if: MPIRun.enabled, "mpirun or the lqlora binary is missing (install openmpi-bin; LQLORA_REQUIRE_MPI=1 makes this a failure)"))
    func ranksWriteWhatOneProcessWrites() throws {
        let ws = try Workspace()
        func quantize(ranks: Int, _ name: String, method: String = "lq-lora") throws -> (status: Int32, stdout: String, stderr: String) {
            var arguments = ["quantize", "--model", ws.root + "/model", "--out", ws.root + "/" + name, "--method", method, "--budget", "3.0",
                             "--grid", "compact", "--ilp-cache", ws.root + "/\(name).cache.json", "--threads", "1"]
            if method == "lq-lora" { arguments += ["--rank", "4"] }
            return ranks == 1 ? try BuiltCommand.run(arguments) : try MPIRun.run(ranks: ranks, arguments, timeout: 120)
        }
        let one = try quantize(ranks: 1, "one")
        #expect(one.status == 0, "\(one.stderr)")
        let reference = try Self.files(ws.root + "/one")
        #expect(reference.keys.contains("model.safetensors") && reference.keys.contains("adapter/adapter_model.safetensors"), "\(reference.keys.sorted())")
        let cache = try Data(contentsOf: URL(fileURLWithPath: ws.root + "/one.cache.json"))
        for ranks in [2, 3] {
            let many = try quantize(ranks: ranks, "np\(ranks)")
            #expect(many.status == 0, "\(many.stderr)")
            #expect(!many.stderr.contains("[rank "), "\(many.stderr)")
            #expect(many.stdout.components(separatedBy: "lq-lora: 14 matrices").count == 2, "\(many.stdout)")
            let files = try Self.files(ws.root + "/np\(ranks)")
            #expect(files.keys.sorted() == reference.keys.sorted())
            for (path, data) in reference { #expect(files[path] == data, "-np \(ranks): \(path) differs from one process's") }
            #expect(try Data(contentsOf: URL(fileURLWithPath: ws.root + "/np\(ranks).cache.json")) == cache, "-np \(ranks): the error-table cache differs")
        }
        // With the cache holding every row, two ranks only decompose; qlora-ilp splits the same way.
        try FileManager.default.copyItem(atPath: ws.root + "/one.cache.json", toPath: ws.root + "/cached.cache.json")
        let cached = try quantize(ranks: 2, "cached")
        #expect(cached.status == 0, "\(cached.stderr)")
        #expect(try Self.files(ws.root + "/cached")["model.safetensors"] == reference["model.safetensors"])
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ws.root + "/cached/quant_report.json"))) as! [String: Any]
        #expect((report["error_table"] as! [String: Any])["from_cache"] as? Int == 14)
        let ilpOne = try quantize(ranks: 1, "ilp1", method: "qlora-ilp"), ilpTwo = try quantize(ranks: 2, "ilp2", method: "qlora-ilp")
        #expect(ilpOne.status == 0 && ilpTwo.status == 0, "\(ilpOne.stderr)\(ilpTwo.stderr)")
        #expect(try Self.files(ws.root + "/ilp2") == Self.files(ws.root + "/ilp1"))
        // A method that does not split is refused before it writes.
        let nf4 = try MPIRun.run(ranks: 2, ["quantize", "--model", ws.root + "/model", "--out", ws.root + "/nf4", "--method", "nf4"], timeout: 60)
        #expect(nf4.status != 0 && nf4.stderr.contains("lqlora quantize --method nf4 runs as one process"), "\(nf4.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/nf4"))
    }
}
