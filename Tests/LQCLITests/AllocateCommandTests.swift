import Foundation
import LQFormats
import LQTestSupport
import Testing

/// `lqlora allocate` end to end: a costs file against HiGHS's optimum, the curve and the memory
/// planner over the error table that `quantize --ilp-cache` keeps, and `quantize --memory`.
struct AllocateCommandTests {
    static let tiny = CLI.root + "/Tests/LQModelTests/Fixtures/llama/mha"
    static let highs = CLI.root + "/Tests/LQLoRATests/Fixtures/allocation-highs.json"

    @Test(builtBinary)
    func aCostsFileGivesHiGHSsOptimum() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let fixture = try CLI.jsonFile(Self.highs)
        let cases = fixture["cases"] as! [[String: Any]]
        let c = try #require(cases.first { ($0["name"] as! String).hasPrefix("random-24") })
        let path = dir.file("costs.json")
        let instance: [String: Any] = ["numel": c["numel"]!, "bits": c["bits"]!, "cost": c["cost"]!]
        try JSONSerialization.data(withJSONObject: instance).write(to: URL(fileURLWithPath: path))
        for solve in c["solves"] as! [[String: Any]] {
            let budget = solve["budget"] as! Double
            let out = try CLI.json(try CLI.succeed(["allocate", "--costs", path, "--budget", "\(budget)", "--json"]))
            #expect(out["status"] as? String == "optimal")
            #expect(relativelyClose(out["objective"] as! Double, solve["objective"] as! Double, 1e-12), "budget \(budget)")
            let picked = (out["choice"] as! [[String: Any]]).map { Int(($0["config"] as! String).dropFirst("config ".count))! }
            #expect(picked == solve["choice"] as! [Int], "budget \(budget)")
            #expect((out["average_bits"] as! Double) <= budget)
        }
        let text = try CLI.succeed(["allocate", "--costs", path, "--budget", "3"])
        #expect(text.contains("optimal") && text.contains("matrix 23"))

        // Bad input is named.
        try #"{"numel": [1, 2], "bits": [2, 4], "cost": [[1, 0.5], [2]]}"#.write(toFile: dir.file("ragged.json"), atomically: true, encoding: .utf8)
        let ragged = try CLI.run(["allocate", "--costs", dir.file("ragged.json"), "--budget", "3"])
        #expect(ragged.status == 1 && ragged.stderr.contains("cost row 1 ('matrix 1') has 1 entries for 2 configurations"))
        let low = try CLI.run(["allocate", "--costs", path, "--budget", "1"])
        #expect(low.status == 1 && low.stderr.contains("smallest feasible budget is"))
        let none = try CLI.run(["allocate", "--costs", path])
        #expect(none.status != 0 && none.stderr.contains("no budget"))
    }

    @Test(builtBinary)
    func curveAndMemoryPlanFromTheCache() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let cache = dir.file("cache.json")
        let quantized = dir.file("q3")
        _ = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", quantized, "--method", "qlora-ilp", "--budget", "3",
                             "--grid", "compact", "--ilp-cache", cache])
        let report = try CLI.jsonFile(quantized + "/quant_report.json")
        let objective = (report["solver"] as! [String: Any])["objective"] as! Double

        let svg = dir.file("curve.svg")
        let curve = try CLI.json(try CLI.succeed(["allocate", "--ilp-cache", cache, "--method", "qlora-ilp", "--budgets", "2.5:3.5:0.25",
                                                  "--plot", svg, "--json"]))
        let points = curve["curve"] as! [[String: Any]]
        #expect(points.map { $0["budget"] as! Double } == [2.5, 2.75, 3.0, 3.25, 3.5])
        #expect(points.allSatisfy { $0["status"] as? String == "optimal" })
        let errors = points.map { $0["objective"] as! Double }
        #expect(zip(errors, errors.dropFirst()).allSatisfy { $0 >= $1 }, "\(errors)")
        // The same table and budget as quantize's: the same optimum.
        #expect(relativelyClose(errors[2], objective, 1e-12), "\(errors[2]) vs quantize's \(objective)")
        let uniform = curve["uniform"] as! [[String: Any]]
        #expect(uniform.count == 2 && (uniform[0]["label"] as! String).hasPrefix("NF4"))
        let drawing = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(drawing.contains("<polyline") && drawing.contains(">NF4<") && drawing.contains(">NF3<"))

        // The memory planner: the size allocate plans is the size quantize then reports and writes.
        let base = try CLI.json(try CLI.succeed(["allocate", "--ilp-cache", cache, "--method", "qlora-ilp", "--model", Self.tiny,
                                                 "--memory", "100000", "--json"]))
        let memory = base["memory"] as! [String: Any]
        #expect((memory["bytes"] as! Int) <= 100_000 && (base["budget"] as! Double) > 2)
        let out = dir.file("m")
        let printed = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", out, "--method", "qlora-ilp", "--memory", "100000B",
                                       "--grid", "compact", "--ilp-cache", cache])
        #expect(printed.contains("the least error whose weight files fit"))
        let planned = try CLI.jsonFile(out + "/quant_report.json")
        #expect((planned["memory"] as! [String: Any])["bytes"] as? Int == memory["bytes"] as? Int)
        #expect(planned["budget"] as? Double == base["budget"] as? Double)
        #expect(try Self.weightFileBytes(out) == memory["bytes"] as! Int)

        let tooSmall = try CLI.run(["allocate", "--ilp-cache", cache, "--method", "qlora-ilp", "--model", Self.tiny, "--memory", "1KB"])
        #expect(tooSmall.status == 1 && tooSmall.stderr.contains("cannot hold the model: the smallest that fits"))
        let both = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("x"), "--method", "qlora-ilp", "--budget", "3", "--memory", "1GiB"])
        #expect(both.status != 0 && both.stderr.contains("--budget or --memory"))
        let noModel = try CLI.run(["allocate", "--ilp-cache", cache, "--memory", "1GiB"])
        #expect(noModel.status != 0 && noModel.stderr.contains("needs --model"))
    }

    /// The sizes of the weight files quantize wrote into `out`, as the file system reports them.
    static func weightFileBytes(_ out: String) throws -> Int {
        try ["model.safetensors", "adapter/adapter_model.safetensors"].filter { FileManager.default.fileExists(atPath: out + "/" + $0) }
            .reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: out + "/" + $1)[.size] as! Int) }
    }

    /// `quantize --method lq-lora --memory X` is exact on disk: at targets from the smallest that
    /// fits (and one byte below it, refused with that size) to one that holds every matrix's least
    /// error, the weight files written are the size quantize reports, byte for byte, and no larger
    /// than X, and `allocate --memory X` plans the same bytes.
    @Test(builtBinary)
    func lqloraMemoryPlansAreExactOnDisk() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let cache = dir.file("cache.json")
        let common = ["--method", "lq-lora", "--rank", "8", "--grid", "compact", "--ilp-cache", cache]
        let atBudget = dir.file("b3")
        _ = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", atBudget, "--budget", "3"] + common)
        let budgetBytes = try Self.weightFileBytes(atBudget)

        let refused = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("none"), "--memory", "1000"] + common)
        #expect(refused.status == 1 && refused.stderr.contains("cannot hold the model: the smallest that fits"), "\(refused.stderr)")
        let named = refused.stderr.matches(of: #/\((\d+) bytes\)/#).map { Int($0.output.1)! }
        let smallest = try #require(named.last)
        #expect(!FileManager.default.fileExists(atPath: dir.file("none")))
        let allocateRefused = try CLI.run(["allocate", "--ilp-cache", cache, "--model", Self.tiny, "--rank", "8", "--memory", "\(smallest - 1)"])
        #expect(allocateRefused.status == 1 && allocateRefused.stderr.contains("(\(smallest) bytes)"), "\(allocateRefused.stderr)")

        var planned: [Int] = []
        for (k, target) in [smallest, (smallest + budgetBytes) / 2, budgetBytes, budgetBytes * 2].enumerated() {
            let out = dir.file("m\(k)")
            let printed = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", out, "--memory", "\(target)"] + common)
            let memory = try #require(try CLI.jsonFile(out + "/quant_report.json")["memory"] as? [String: Any])
            let bytes = memory["bytes"] as! Int, onDisk = try Self.weightFileBytes(out)
            #expect(onDisk == bytes && bytes <= target, "target \(target): \(onDisk) on disk, \(bytes) reported")
            #expect(bytes == ["quantized", "lowrank", "fixed", "headers"].reduce(0) { $0 + (memory[$1] as! Int) })
            #expect(printed.contains("weight files \(Self.grouped(bytes)) bytes"), "\(printed)")
            let allocated = try CLI.json(try CLI.succeed(["allocate", "--ilp-cache", cache, "--model", Self.tiny, "--rank", "8",
                                                          "--memory", "\(target)", "--json"]))
            #expect((allocated["memory"] as! [String: Any])["bytes"] as? Int == bytes, "target \(target)")
            planned.append(bytes)
        }
        #expect(planned[0] == smallest)
        #expect(zip(planned, planned.dropFirst()).allSatisfy { $0 <= $1 } && planned[0] < planned[2], "\(planned)")
        let unconstrained = try CLI.jsonFile(dir.file("m3") + "/quant_report.json")["memory"] as! [String: Any]
        #expect(unconstrained["unconstrained"] as? Bool == true && (unconstrained["lowrank"] as! Int) == 4 * 8 * 2 * (4 * (64 + 64) + 3 * (96 + 64)))
    }

    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        return String(digits.enumerated().flatMap { i, d in (i > 0 && (digits.count - i) % 3 == 0 ? [","] : []) + [d] })
    }
}
