import Foundation
import Testing

/// `lqlora bench` at the smallest sizes its options allow: it runs, and its JSON holds finite
/// figures whose anchors come from the same run (performance itself is never asserted).
struct BenchCommandTests {
    static func checkFigures(_ stdout: String, _ label: String) throws {
        let figures = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as! [[String: Any]]
        #expect(!figures.isEmpty, "\(label)")
        let unanchored = figures.filter { $0["anchor"] == nil }.map { $0["value"] as! Double }
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
            // The anchor is a figure measured in the same run, and the ratio says "faster than it" above 1.
            #expect(unanchored.contains(anchorValue), "\(label) \(name): anchor \(anchorValue) is not a figure of this run")
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

    /// bench decompose always solves two 210/224 × 432 ILPs (about 90 s on 2 cores): run with LQLORA_SLOW_TESTS=1.
    @Test(builtBinary, .enabled(if: ProcessInfo.processInfo.environment["LQLORA_SLOW_TESTS"] == "1",
                                "bench decompose takes ~90 s (its ILP figures have no size option); set LQLORA_SLOW_TESTS=1"))
    func decompose() throws {
        let out = try CLI.succeed(["bench", "decompose", "--size", "64", "--rank", "4", "--repeats", "1", "--json"])
        try Self.checkFigures(out, "bench decompose")
    }
}
