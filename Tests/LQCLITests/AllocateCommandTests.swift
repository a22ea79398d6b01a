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

        // The memory planner: the size allocate plans is the size quantize then reports, and the
        // written model holds it plus its header and, per matrix, its codebook (4·2^b bytes), the
        // 4-byte scale offset and the rounding of packed codes and short groups to whole bytes.
        let base = try CLI.json(try CLI.succeed(["allocate", "--ilp-cache", cache, "--method", "qlora-ilp", "--model", Self.tiny,
                                                 "--memory", "100000", "--json"]))
        let memory = base["memory"] as! [String: Any]
        #expect((memory["bytes"] as! Int) <= 100_000 && (base["budget"] as! Double) > 2)
        let out = dir.file("m")
        let printed = try CLI.succeed(["quantize", "--model", Self.tiny, "--out", out, "--method", "qlora-ilp", "--memory", "100000B",
                                       "--grid", "compact", "--ilp-cache", cache])
        #expect(printed.contains("the largest whose model fits"))
        let planned = try CLI.jsonFile(out + "/quant_report.json")
        #expect((planned["memory"] as! [String: Any])["bytes"] as? Int == memory["bytes"] as? Int)
        #expect(planned["budget"] as? Double == base["budget"] as? Double)
        let file = try FileManager.default.attributesOfItem(atPath: out + "/model.safetensors")[.size] as! Int
        let header = try SafeTensorsFile(path: out + "/model.safetensors").dataStart
        let extra = file - header - (memory["bytes"] as! Int)
        #expect(extra >= 0 && extra <= 14 * (4 * 256 + 64), "file \(file) − header \(header) vs planned \(memory["bytes"]!)")

        let tooSmall = try CLI.run(["allocate", "--ilp-cache", cache, "--method", "qlora-ilp", "--model", Self.tiny, "--memory", "1KB"])
        #expect(tooSmall.status == 1 && tooSmall.stderr.contains("cannot hold the model: the smallest that fits"))
        let both = try CLI.run(["quantize", "--model", Self.tiny, "--out", dir.file("x"), "--method", "qlora-ilp", "--budget", "3", "--memory", "1GiB"])
        #expect(both.status != 0 && both.stderr.contains("--budget or --memory"))
        let noModel = try CLI.run(["allocate", "--ilp-cache", cache, "--memory", "1GiB"])
        #expect(noModel.status != 0 && noModel.stderr.contains("needs --model"))
    }
}
