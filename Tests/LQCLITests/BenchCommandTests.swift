import Foundation
import Testing
import LQTestSupport

/// `lqlora bench` at the smallest sizes its options allow: it runs, and its JSON holds finite
/// figures whose anchors come from the same run (performance itself is never asserted).
struct BenchCommandTests {
    static func checkFigures(_ stdout: String, _ label: String) throws {
        let figures = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as! [[String: Any]]
        #expect(!figures.isEmpty, "\(label)")
        let measured = figures.map { $0["value"] as! Double }
        var anchored = 0
        for f in figures {
            let name = f["name"] as! String, value = f["value"] as! Double, unit = f["unit"] as! String
            #expect(value.isFinite && value > 0, "\(label) \(name): value \(value)")
            guard let anchor = f["anchor"] as? String else {
                #expect(f["ratio"] == nil && f["anchor_value"] == nil, "\(label) \(name)")
                continue
            }
            anchored += 1
            let anchorValue = f["anchor_value"] as! Double, ratio = f["ratio"] as! Double
            #expect(!anchor.isEmpty && anchorValue.isFinite && anchorValue > 0 && ratio.isFinite && ratio > 0, "\(label) \(name)")
            // The anchor is a figure measured in the same run (a base such as sgemv, or another kernel
            // such as NF4's GEMV), and the ratio says "faster than it" above 1.
            #expect(measured.contains(anchorValue), "\(label) \(name): anchor \(anchorValue) is not a figure of this run")
            let expected = ["ms", "s"].contains(unit) ? anchorValue / value : value / anchorValue
            #expect(abs(ratio - expected) <= 1e-12 * expected, "\(label) \(name): ratio \(ratio) vs \(expected)")
        }
        #expect(anchored > 0, "\(label): no anchored figure")
    }

    @Test(builtBinary)
    func blas() throws {
        let out = try CLI.succeed(["bench", "blas", "--size", "32", "--elements", "4096", "--repeats", "1", "--json"])
        try Self.checkFigures(out, "bench blas")
    }

    @Test(builtBinary)
    func quant() throws {
        let out = try CLI.succeed(["bench", "quant", "--no-gemm", "--repeats", "1", "--json"])
        try Self.checkFigures(out, "bench quant")
    }

    /// The smallest decomposition and ILP problems (the default ILPs, 210 and 224 matrices at three budgets, take well under a second).
    @Test(builtBinary)
    func decompose() throws {
        let out = try CLI.succeed(["bench", "decompose", "--size", "64", "--rank", "4", "--ilp-matrices", "14", "--repeats", "1", "--json"])
        try Self.checkFigures(out, "bench decompose")
    }
}

extension BenchCommandTests {
    /// Sizes that have no benchmark are refused by name (a size of 0 used to trap, 0 elements printed nan).
    @Test(builtBinary)
    func emptySizesAreRefused() throws {
        for arguments in [["blas", "--size", "0"], ["blas", "--elements", "0"], ["quant", "--gemm-rows", "0"], ["decompose", "--rank", "0"]] {
            let r = try BuiltCommand.run(["bench"] + arguments)
            #expect(r.status == 64 && r.stderr.contains("must be"), "\(arguments): \(r.stderr)")
        }
    }
}
