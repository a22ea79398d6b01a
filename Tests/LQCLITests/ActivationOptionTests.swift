import Foundation
import LQTestSupport
import Testing

/// `--activations int8|exact` and LQLORA_DECODE on `generate`, `rag ask` and `eval`, on an NF4 copy of
/// the tiny model: the flag over the variable over the default (int8 for generate, exact for eval,
/// the same bytes as before), bad values refused by name, and eval's int8 perplexity near the exact one.
struct ActivationOptionTests {
    static func run(_ arguments: [String], decode: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        try BuiltCommand.run(arguments, environment: decode.map { ["LQLORA_DECODE": $0] } ?? [:], timeout: 120)
    }

    @Test(builtBinary, arguments: [["generate"], ["eval"], ["rag", "ask"]])
    func theOptionIsListed(command: [String]) throws {
        let r = try CLI.run(command + ["--help"])
        #expect(r.status == 0 && r.stdout.contains("--activations <activations>") && r.stdout.contains("LQLORA_DECODE"), "\(command): \(r.stdout)")
    }

    @Test(builtBinary)
    func flagOverVariableOverDefault() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let model = dir.file("nf4")
        _ = try CLI.succeed(["quantize", "--model", CLI.model, "--out", model, "--method", "nf4"])
        let generate = ["generate", "--model", model, "--prompt", "The quick brown", "--max-tokens", "12"]
        func text(_ extra: [String], decode: String? = nil) throws -> String {
            let r = try Self.run(generate + extra, decode: decode)
            #expect(r.status == 0, "\(extra) LQLORA_DECODE=\(decode ?? "unset"): \(r.stderr)")
            return r.stdout
        }
        let plain = try text(["--activations", "exact"])
        #expect(try text([], decode: "exact") == plain)
        let int8 = try text(["--activations", "int8"])
        #expect(try text([]) == int8, "int8 is generate's default")
        #expect(try text([], decode: "int8") == int8)
        #expect(try text(["--activations", "int8"], decode: "exact") == int8, "the flag wins over the variable")
        #expect(try text(["--activations", "exact"], decode: "int8") == plain)

        let badVariable = try Self.run(generate, decode: "fast")
        #expect(badVariable.status == 64 && badVariable.stderr.contains("LQLORA_DECODE must be exact or int8, not 'fast'"), "\(badVariable.stderr)")
        let badFlag = try Self.run(generate + ["--activations", "fast"])
        #expect(badFlag.status == 64 && badFlag.stderr.contains("--activations"), "\(badFlag.stderr)")

        // eval: the exact path gives the default's bytes; int8 (every product) moves the perplexity a little.
        let eval = ["eval", "--model", model, "--data", CLI.text("sample.txt"), "--ctx", "64", "--json"]
        func nll(_ extra: [String]) throws -> Double { try CLI.json(CLI.succeed(eval + extra))["nll"] as! Double }
        let exact = try nll([])
        #expect(try nll(["--activations", "exact"]) == exact)
        let quantized = try nll(["--activations", "int8"])
        #expect(quantized != exact && abs(quantized - exact) <= 0.01 * exact, "nll \(quantized) with int8 activations, \(exact) exact")
    }
}
