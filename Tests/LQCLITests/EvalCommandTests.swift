import Foundation
import LQFormats
import LQTensor
import LQTestSupport
import Testing

/// `lqlora eval` against transformers (+ PEFT) on the same text, tokenized by `tokenizers`: both
/// protocols, with and without the adapter, on .txt, CRLF .txt, .jsonl and .gz input.
struct EvalCommandTests {
    static var cases: [[String: Any]] { CLI.oracles["eval"] as! [[String: Any]] }

    @Test(builtBinary, arguments: EvalCommandTests.cases.map { $0["name"] as! String })
    func perplexityMatchesTransformers(_ name: String) throws {
        let c = Self.cases.first { $0["name"] as? String == name }!
        var args = ["eval", "--model", CLI.model, "--json"] + (c["args"] as! [String])
        args[args.firstIndex(of: "--data")! + 1] = CLI.text(args[args.firstIndex(of: "--data")! + 1])
        if c["adapter"] as! Bool { args += ["--adapter", CLI.adapter] }
        let result = try CLI.json(CLI.succeed(args))
        // fp32 forward passes on both sides: the mean NLL agrees to ~1e-8; the adapter moves it by 3e-3.
        let ppl = result["perplexity"] as! Double, nll = result["nll"] as! Double
        #expect(relativelyClose(ppl, c["perplexity"] as! Double, 1e-6), "\(name): perplexity \(ppl) vs transformers \(c["perplexity"]!)")
        #expect(abs(nll - (c["nll"] as! Double)) <= 1e-6, "\(name): nll \(nll) vs \(c["nll"]!)")
        #expect(result["tokens"] as? Int == c["tokens"] as? Int, "\(name): scored tokens")
        if let error = c["perplexity_error"] as? Double {
            #expect(relativelyClose(result["perplexity_error"] as! Double, error, 1e-5), "\(name): error \(result["perplexity_error"]!) vs \(error)")
        }
    }

    /// The same text as LF, CRLF (and a lone CR) or gzipped gives the same evaluation.
    @Test(builtBinary)
    func lineEndingsAndCompressionDoNotChangeTheText() throws {
        let byName = Dictionary(uniqueKeysWithValues: Self.cases.map { ($0["name"] as! String, $0) })
        #expect(byName["crlf-transformers"]!["text_tokens"] as? Int == byName["txt-transformers"]!["text_tokens"] as? Int)
        let crlf = [UInt8](try Data(contentsOf: URL(fileURLWithPath: CLI.text("sample-crlf.txt"))))
        let crs = crlf.indices.filter { crlf[$0] == 0x0D }
        #expect(crs.count > 10)
        #expect(crs.filter { $0 + 1 < crlf.count && crlf[$0 + 1] == 0x0A }.count == crs.count - 1, "CRLF line ends and one lone CR")
        #expect(crlf.count - crs.count + 1 == (try Data(contentsOf: URL(fileURLWithPath: CLI.text("sample.txt")))).count)
        let plain = try CLI.json(CLI.succeed(["eval", "--model", CLI.model, "--json", "--ctx", "64", "--data", CLI.text("sample.txt")]))
        let crlfResult = try CLI.json(CLI.succeed(["eval", "--model", CLI.model, "--json", "--ctx", "64", "--data", CLI.text("sample-crlf.txt")]))
        let gz = try CLI.json(CLI.succeed(["eval", "--model", CLI.model, "--json", "--ctx", "64", "--data", CLI.text("sample.txt.gz")]))
        #expect(plain["nll"] as! Double == crlfResult["nll"] as! Double && plain["nll"] as! Double == gz["nll"] as! Double)
    }

    /// The text output carries the same perplexity, rounded.
    @Test(builtBinary)
    func textOutput() throws {
        let c = Self.cases.first { $0["name"] as? String == "txt-llamacpp" }!
        let out = try CLI.succeed(["eval", "--model", CLI.model, "--data", CLI.text("sample.txt"), "--method", "llamacpp", "--ctx", "64"])
        let expected = String(format: "perplexity: %.4f ± %.4f", c["perplexity"] as! Double, c["perplexity_error"] as! Double)
        #expect(out.hasPrefix(expected + "\n"), "\(out)")
        #expect(out.contains("over \(c["tokens"] as! Int) tokens"))
    }

    /// --logits FILE: the first window's ids and logits against transformers' (with and without the adapter).
    @Test(builtBinary, arguments: [false, true])
    func logitsFileMatchesTransformers(_ adapter: Bool) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("logits.safetensors")
        _ = try CLI.succeed(["eval", "--model", CLI.model, "--data", CLI.text("sample.txt"), "--ctx", "32", "--max-tokens", "32",
                             "--logits", path] + (adapter ? ["--adapter", CLI.adapter] : []))
        let got = try SafeTensorsFile(path: path), oracle = try CLI.tensors()
        let ids = try got.floatTensor("input_ids"), logits = try got.floatTensor("logits")
        #expect(ids.shape == [1, 32] && logits.shape == [1, 32, 128])
        #expect(ids.array == (try oracle.floatTensor("logits.input_ids")).array)
        let expected = try oracle.floatTensor(adapter ? "logits.adapter" : "logits.base")
        let diff = maxAbsDifference(logits, expected)
        #expect(diff <= 1e-4, "max |Δlogit| \(diff)")
        // The adapter changes the logits far more than the tolerance: the comparison can tell them apart.
        #expect(maxAbsDifference(try oracle.floatTensor("logits.base"), try oracle.floatTensor("logits.adapter")) > 1e-2)
    }
}
