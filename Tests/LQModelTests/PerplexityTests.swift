import Foundation
import LQFormats
import LQModel
import LQTestSupport
import Testing

/// Perplexity protocols against transformers' documented sliding window and a transcription of
/// llama.cpp's scoring, both run with PyTorch on the tiny model (scripts/make-llama-fixtures.py).
struct PerplexityTests {
    static let file = try! SafeTensorsFile(path: LlamaTests.dir + "/perplexity.safetensors")

    func reference(_ key: String) throws -> Double {
        let e = try Self.file.entry(key)
        return Self.file.bytes(of: e).loadUnaligned(as: Double.self)
    }

    @Test(arguments: [(16, 16), (16, 6), (50, 50)])
    func huggingFaceSlidingWindow(ctx: Int, stride: Int) throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        let tokens = try Self.file.floatTensor("tokens").array.map { Int($0) }
        for batch in [1, 3] {
            let result = try Perplexity.evaluate(model, tokens: tokens, method: .huggingFace(context: ctx, stride: stride), batch: batch)
            let expected = try reference("hf_\(ctx)_\(stride)")
            #expect(abs(result.perplexity - expected) / expected < 1e-5, "ctx \(ctx) stride \(stride) batch \(batch): \(result.perplexity) vs \(expected)")
        }
    }

    @Test func llamaCppProtocol() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        let tokens = try Self.file.floatTensor("tokens").array.map { Int($0) }
        let result = try Perplexity.evaluate(model, tokens: tokens, method: .llamaCpp(context: 16, bos: nil))
        #expect(result.tokens == 3 * 7)
        #expect(abs(result.perplexity - (try reference("llamacpp_16"))) / result.perplexity < 1e-5)
        #expect(abs(result.perplexity_error - (try reference("llamacpp_16_error"))) / result.perplexity_error < 1e-4)
        #expect(throws: ModelError.self) { try Perplexity.evaluate(model, tokens: Array(tokens.prefix(20)), method: .llamaCpp(context: 16, bos: nil)) }
    }
}

/// The real model: SmolLM2-135M-Instruct converted from its GGUF, against transformers' perplexity
/// on the same checkpoint (scripts/compare-eval.py wrote the reference).
struct SmolLM2PerplexityTests {
    struct Reference: Decodable { let max_chars: Int; let ctx: Int; let tokens: Int; let transformers_ppl: Double }
    static let wikitext = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/wikitext-2-raw-test.txt").path
    static let available = RealModel.enabled(RealModel.smolLM2)

    @Test(.enabled(if: available, "SmolLM2 not converted (scripts/fetch-smollm2.sh)"))
    func perplexityMatchesTransformers() throws {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: modelFixtures + "/smollm2-wikitext-ppl.json")))
        let model = try LlamaModel(directory: TokenizerTests.smolLM2)
        let tokenizer = try loadTokenizer(directory: TokenizerTests.smolLM2)
        let text = String(String.UnicodeScalarView(try EvaluationText.read(path: Self.wikitext).unicodeScalars.prefix(ref.max_chars)))
        let tokens = try tokenizer.encode(text, addSpecialTokens: true)
        #expect(tokens.count == ref.tokens)
        let result = try Perplexity.evaluate(model, tokens: tokens, method: .huggingFace(context: ref.ctx, stride: ref.ctx))
        let relative = abs(result.perplexity - ref.transformers_ppl) / ref.transformers_ppl
        // transformers itself moves by 8e-6 between runs (its summation order depends on threads).
        #expect(relative < 2e-5, "lqlora \(result.perplexity) vs transformers \(ref.transformers_ppl)")
    }
}

/// GPTQ's perplexity protocol (eval --method gptq) against the GPTQ evaluation loop run in torch on
/// SmolLM2 (scripts/make-gptq-ppl-fixture.py): WikiText-2 joined as its loader joins the dataset's
/// rows, disjoint windows of 2048, the first four.
struct GPTQPerplexityProtocolTests {
    struct Reference: Decodable { let seqlen: Int; let windows: Int; let perplexity: Double; let joined_text_tokens: Int; let first_ids: [Int] }

    @Test(.enabled(if: SmolLM2PerplexityTests.available, "SmolLM2 not converted (scripts/fetch-smollm2.sh)"))
    func matchesGPTQsEvaluationLoop() throws {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: modelFixtures + "/oracles/gptq-ppl-smollm2.json")))
        let tokenizer = try loadTokenizer(directory: RealModel.smolLM2)
        let tokens = try tokenizer.encode(try EvaluationText.gptqJoined(path: SmolLM2PerplexityTests.wikitext, corpus: .wikitext), addSpecialTokens: true)
        #expect(tokens.count == ref.joined_text_tokens && Array(tokens.prefix(16)) == ref.first_ids, "the joined text: \(tokens.count) tokens")
        let model = try LlamaModel(directory: RealModel.smolLM2)
        let result = try Perplexity.evaluate(model, tokens: Array(tokens.prefix(ref.windows * ref.seqlen + 100)), method: .gptq(context: ref.seqlen))
        #expect(result.tokens == ref.windows * (ref.seqlen - 1))
        #expect(abs(result.perplexity - ref.perplexity) / ref.perplexity < 2e-5, "lqlora \(result.perplexity) vs GPTQ's loop \(ref.perplexity)")
    }
}
