import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// Fixtures written by the reference libraries themselves (Tests/LQModelTests/Fixtures/oracles):
/// transformers' greedy generate, HF's top-p warper, apply_chat_template, and transformers loading
/// GGUF files directly (gguf_file=), independently of lqlora's converter.
enum Oracles {
    static let dir = modelFixtures + "/oracles"
    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) as! [String: Any]
    }
}

struct GenerateOracleTests {
    /// Greedy decoding through the KV cache gives transformers' `generate(do_sample=False)` ids
    /// (scripts/make-generate-fixtures.py; the smallest top-1/top-2 logit gap is 5e-4, far above fp32 noise).
    @Test(arguments: ["mha", "gqa_llama3", "tied", "qwen2_bias"])
    func greedyIdsMatchTransformers(name: String) throws {
        let fixtures = try Oracles.json("generate.json")["fixtures"] as! [String: [String: Any]]
        let model = try LlamaModel(directory: LlamaTests.dir + "/" + name)
        let cases = try #require(fixtures[name]?["cases"] as? [[String: Any]])
        #expect(cases.count == 2)
        for c in cases {
            var sampler = Sampler(temperature: 0, topP: 1, seed: 0)
            let want = c["generated"] as! [Int]
            let got = try Generation.generate(model, prompt: c["prompt_ids"] as! [Int], maxTokens: want.count, sampler: &sampler)
            #expect(got.tokens == want, "\(name)")
        }
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2), "SmolLM2 not converted: run scripts/fetch-smollm2.sh"))
    func smolLM2GreedyTextMatchesTransformers() throws {
        let smol = try Oracles.json("generate.json")["smollm2"] as! [String: Any]
        let model = try LlamaModel(directory: RealModel.smolLM2)
        let tokenizer = try loadTokenizer(directory: RealModel.smolLM2)
        for c in smol["cases"] as! [[String: Any]] {
            let prompt = try tokenizer.encode(c["prompt"] as! String, addSpecialTokens: true)
            #expect(prompt == c["prompt_ids"] as! [Int])
            var sampler = Sampler(temperature: 0, topP: 1, seed: 0)
            let want = c["generated"] as! [Int]
            let got = try Generation.generate(model, prompt: prompt, maxTokens: want.count, sampler: &sampler, stops: Set(model.config.eosTokenIDs))
            #expect(got.tokens == want)
            #expect(tokenizer.decode(got.tokens, skipSpecialTokens: true) == c["text"] as! String)
        }
        // And through the command a user runs.
        if BuiltCommand.path != nil {
            let c = (smol["cases"] as! [[String: Any]])[0]
            let r = try BuiltCommand.run(["generate", "--model", RealModel.smolLM2, "--prompt", c["prompt"] as! String,
                                          "--max-tokens", String((c["generated"] as! [Int]).count), "--temperature", "0"])
            #expect(r.status == 0 && r.stdout == (c["text"] as! String) + "\n", "\(r.stdout)")
        }
    }

    @Test func emptyPromptIsRefused() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        var sampler = Sampler(temperature: 0, topP: 1, seed: 0)
        #expect(throws: Generation.Failure.self) { try Generation.generate(model, prompt: [], maxTokens: 4, sampler: &sampler) }
    }

    /// The nucleus is the set HF's TopPLogitsWarper keeps, with its renormalised probabilities
    /// (exact sets where the cut-off is at least 8.9e-4 from a tie; at top_p = 1 every token).
    @Test func topPSetsMatchTransformers() throws {
        let f = try Oracles.json("top-p.json")
        let vectors = (f["logits"] as! [[Double]]).map { $0.map(Float.init) }
        let cases = f["cases"] as! [[String: Any]]
        #expect(cases.count == 18)
        for c in cases {
            let logits = vectors[c["vector"] as! Int]
            let topP = Float(c["top_p"] as! Double), temperature = Float(c["temperature"] as! Double)
            let kept = logits.withUnsafeBufferPointer { Sampler.nucleus($0, temperature: temperature, topP: topP) }
            let want = c["kept"] as! [Int], probs = c["probs"] as! [Double]
            if topP < 1 {
                #expect(kept.map(\.token) == want, "top_p \(topP) temperature \(temperature)")
            } else {
                #expect(Set(kept.map(\.token)) == Set(want) && kept.count == logits.count)
            }
            let mass = kept.reduce(0) { $0 + $1.probability }
            for (k, p) in zip(kept.prefix(want.count), probs) where topP < 1 {
                #expect(abs(k.probability / mass - p) <= 1e-6, "token \(k.token): \(k.probability / mass) vs \(p)")
            }
        }
    }
}

/// ChatML, Llama 3 and Llama 2 against transformers' apply_chat_template with each family's
/// official template (scripts/make-chat-template-fixtures.py).
struct ChatTemplateOracleTests {
    @Test(arguments: ["chatml", "llama3", "llama2"])
    func rendersAsTransformers(family: String) throws {
        let templates = try Oracles.json("chat-templates.json")["templates"] as! [String: [String: Any]]
        let t = try #require(templates[family])
        let template = try ChatTemplate(template: t["template"] as? String)
        let cases = (t["cases"] as! [[String: Any]]) + (t["edge_cases"] as? [[String: Any]] ?? [])
        #expect(cases.count >= 4)
        for c in cases {
            let messages = (c["messages"] as! [[String: String]]).map { ChatTemplate.Message(role: $0["role"]!, content: $0["content"]!) }
            let generation = messages.last?.role != "assistant"
            #expect(try template.render(messages, addGenerationPrompt: generation) == c["expected"] as! String, "\(family) \(c["name"]!)")
        }
    }

    @Test func llama2RefusesTurnsOutOfOrder() throws {
        let messages: [ChatTemplate.Message] = [.init(role: "user", content: "a"), .init(role: "system", content: "b")]
        #expect(throws: ModelError.self) { try ChatTemplate.llama2.render(messages) }
    }
}

/// `lqlora convert --from-gguf` against transformers loading the GGUF itself.
struct GGUFOracleTests {
    func convert(_ gguf: String, into dir: String) throws {
        let r = try BuiltCommand.run(["convert", "--from-gguf", gguf, "--out", dir, "--dtype", "f32"])
        try #require(r.status == 0, "\(r.stderr)")
    }

    @Test(.enabled(if: BuiltCommand.path != nil, "lqlora binary not built beside the tests"), arguments: ["q8_0", "q4_0", "q4_1"])
    func tinyGGUFConvertsAsTransformersLoadsIt(type: String) throws {
        let f = try Oracles.json("tiny-gguf.json")
        let file = (f["files"] as! [String: [String: Any]])["tiny-mha-\(type).gguf"]!
        let dir = NSTemporaryDirectory() + "lqlora-gguf-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try convert(Oracles.dir + "/tiny-mha-\(type).gguf", into: dir)
        // Every tensor's sum and norm, as transformers dequantized it.
        let checkpoint = try Checkpoint(path: dir)
        let tensors = file["tensors"] as! [String: [Any]]
        #expect(Set(checkpoint.tensorNames) == Set(tensors.keys))
        for (name, stats) in tensors {
            let t = try checkpoint.floatTensor(name)
            #expect(t.shape == stats[0] as! [Int], "\(name)")
            var sum = 0.0, squares = 0.0
            for i in 0..<t.count { sum += Double(t.pointer[i]); squares += Double(t.pointer[i]) * Double(t.pointer[i]) }
            let wantSum = stats[1] as! Double, wantNorm = stats[2] as! Double
            #expect(abs(sum - wantSum) <= 1e-9 * max(1, abs(wantSum)) + 1e-6, "\(name) sum \(sum) vs \(wantSum)")
            #expect(abs(squares.squareRoot() - wantNorm) <= 1e-12 * wantNorm + 1e-9, "\(name) norm")
        }
        // The tokenizer and the logits.
        let tokenizer = try loadTokenizer(directory: dir)
        let tok = file["tokenizer"] as! [String: Any]
        #expect(try tokenizer.encode(tok["text"] as! String, addSpecialTokens: false) == tok["ids"] as! [Int])
        let ids = [(f["input_ids"] as! [[Int]])[0]]
        let logits = try SafeTensorsFile(path: Oracles.dir + "/tiny-gguf-logits.safetensors").floatTensor("logits.\(type)")
        let diff = maxAbsDifference(try LlamaModel(directory: dir).forward(ids), logits)
        #expect(diff <= 1e-5, "logits vs transformers on the GGUF: \(diff)")
    }

    /// SmolLM2 as published (Q4_1 GGUF): converted with --dtype f32 it is the model transformers
    /// loads from the GGUF, token for token and in perplexity (the default bf16 conversion rounds
    /// the dequantized weights, which moves this perplexity by 7.6e-4).
    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2) && BuiltCommand.path != nil, "SmolLM2 GGUF not fetched: run scripts/fetch-smollm2.sh"))
    func smolLM2FromItsGGUFMatchesTransformers() throws {
        let f = try Oracles.json("smollm2-gguf.json")
        let gguf = f["gguf"] as! [String: Any]
        let dir = NSTemporaryDirectory() + "lqlora-smol-f32-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try convert(RealModel.root + "/models/SmolLM2-135M-Instruct.Q4_1.gguf", into: dir)
        let tokenizer = try loadTokenizer(directory: dir)
        let text = try EvaluationText.read(path: SmolLM2PerplexityTests.wikitext)
        let prefix = { (n: Int) in String(String.UnicodeScalarView(text.unicodeScalars.prefix(n))) }
        #expect(try tokenizer.encode(prefix(f["ids_chars"] as! Int), addSpecialTokens: true) == gguf["wikitext_ids"] as! [Int])
        let model = try LlamaModel(directory: dir)
        let tokens = try tokenizer.encode(prefix(f["max_chars"] as! Int), addSpecialTokens: true)
        let want = gguf["perplexity"] as! [String: Any]
        #expect(tokens.count == want["tokens"] as! Int)
        let ctx = f["ctx"] as! Int
        let result = try Perplexity.evaluate(model, tokens: tokens, method: .huggingFace(context: ctx, stride: ctx))
        let ppl = want["ppl"] as! Double
        #expect(abs(result.perplexity - ppl) <= 2e-5 * ppl, "lqlora \(result.perplexity) vs transformers on the GGUF \(ppl)")
    }
}
