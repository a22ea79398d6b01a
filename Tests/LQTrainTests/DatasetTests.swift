import Foundation
import LQFormats
import LQModel
import LQTrain
import Testing

struct DatasetTests {
    let tokenizer = try! BPETokenizer(path: trainFixtures + "/../../LQModelTests/Fixtures/tokenizers/smollm.json")
    var formatter: ExampleFormatter { ExampleFormatter(tokenizer: tokenizer, eos: 2, chat: .chatML(defaultSystem: "Be brief."), maskPrompt: true) }

    func write(_ text: String, _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "lqlora-data-\(UUID().uuidString)-" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func formatsMaskThePromptAndEndWithEOS() throws {
        let f = formatter
        let completion = try Dataset(path: try write("{\"prompt\": \"Q: hi\\n\", \"completion\": \"A: hello\"}\n", "c.jsonl"), format: .auto,
                                     formatter: f, seqLen: 100, skipInvalid: false)
        #expect(completion.format == .completion)
        let prompt = try tokenizer.encode("Q: hi\n", addSpecialTokens: true), answer = try tokenizer.encode("A: hello", addSpecialTokens: false)
        #expect(completion.examples[0].tokens == prompt + answer + [2])
        #expect(completion.examples[0].labels == [Int](repeating: -100, count: prompt.count) + answer + [2])

        let alpaca = try Dataset(path: try write("{\"instruction\": \"Add.\", \"input\": \"1+1\", \"output\": \"2\"}\n", "a.jsonl"), format: .auto,
                                 formatter: f, seqLen: 1000, skipInvalid: false)
        #expect(alpaca.format == .alpaca)
        let p = try tokenizer.encode(ExampleFormatter.alpacaPrompt(instruction: "Add.", input: "1+1"), addSpecialTokens: true)
        #expect(try alpaca.examples[0].tokens == p + tokenizer.encode("2", addSpecialTokens: false) + [2])
        #expect(alpaca.examples[0].targets == 2)

        // Chat: every assistant turn (with its end-of-turn token) is trained, everything else masked.
        let chat = try Dataset(path: try write("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Bye\"}, {\"role\": \"assistant\", \"content\": \"Ciao\"}]}\n", "m.jsonl"),
                               format: .auto, formatter: f, seqLen: 1000, skipInvalid: false)
        let e = chat.examples[0]
        let trained = zip(e.tokens, e.labels).filter { $0.1 != -100 }.map(\.0)
        #expect(tokenizer.decode(trained, skipSpecialTokens: false) == "Yo<|im_end|>\nCiao<|im_end|>\n")
        #expect(tokenizer.decode(e.tokens, skipSpecialTokens: false) == (try ChatTemplate.chatML(defaultSystem: "Be brief.").render(
            [.init(role: "user", content: "Hi"), .init(role: "assistant", content: "Yo"), .init(role: "user", content: "Bye"), .init(role: "assistant", content: "Ciao")],
            addGenerationPrompt: false)))

        // Without mask_prompt every token is a target.
        let unmasked = ExampleFormatter(tokenizer: tokenizer, eos: 2, chat: nil, maskPrompt: false)
        let all = try Dataset(path: try write("{\"prompt\": \"Q\", \"completion\": \"A\"}\n", "u.jsonl"), format: .completion, formatter: unmasked, seqLen: 100, skipInvalid: false)
        #expect(all.examples[0].labels == all.examples[0].tokens)
    }

    @Test func gzippedJSONLAndPlainTextRead() throws {
        let path = NSTemporaryDirectory() + "lqlora-data-\(UUID().uuidString).jsonl.gz"
        try Gzip.write(Data("{\"text\": \"one two three\"}\n{\"text\": \"four\"}\n".utf8), to: path)
        let d = try Dataset(path: path, format: .auto, formatter: formatter, seqLen: 100, skipInvalid: false)
        #expect(try d.format == .text && d.examples.count == 2 && d.examples[1].tokens == tokenizer.encode("four", addSpecialTokens: true) + [2])
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 40)
        let t = try Dataset(path: try write(text, "t.txt"), format: .auto, formatter: formatter, seqLen: 32, skipInvalid: false)
        let ids = try tokenizer.encode(text, addSpecialTokens: true) + [2]
        #expect(t.examples.flatMap(\.tokens) == ids && t.examples.dropLast().allSatisfy { $0.tokens.count == 32 })
    }

    @Test func badRecordsNameTheFileAndLine() throws {
        let path = try write("{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"c\"}\nnot json\n", "bad.jsonl")
        #expect(throws: (any Error).self) { try Dataset(path: path, format: .auto, formatter: formatter, seqLen: 100, skipInvalid: false) }
        do {
            _ = try Dataset(path: path, format: .auto, formatter: formatter, seqLen: 100, skipInvalid: false)
        } catch {
            #expect("\(error)" == "\(path):3: field \"completion\" is missing or not a string (format completion)")
        }
        let skipped = try Dataset(path: path, format: .auto, formatter: formatter, seqLen: 100, skipInvalid: true)
        #expect(skipped.examples.count == 1 && skipped.skipped == 2)
        #expect(throws: (any Error).self) { try Dataset(path: "/nonexistent.jsonl", format: .auto, formatter: formatter, seqLen: 100, skipInvalid: false) }
    }

    @Test func batchesPadPackAndRepeatPerEpoch() {
        let examples = (1...10).map { n in Example(tokens: Array(repeating: n, count: n + 1), labels: Array(repeating: n, count: n + 1)) }
        let plan = BatchPlan(examples: examples, batchSize: 3, seqLen: 8, packing: false, pad: 0, seed: 1)
        let b = plan.batches(epoch: 0)
        #expect(b.count == 4 && b == plan.batches(epoch: 0) && b != plan.batches(epoch: 1))
        #expect(b.reduce(0) { $0 + $1.targets } == examples.reduce(0) { $0 + $1.targets })
        for batch in b {
            #expect(Set(batch.tokens.map(\.count)).count == 1)
            #expect(batch.tokens.count == batch.labels.count)
            for (t, l) in zip(batch.tokens, batch.labels) { #expect(t.count == l.count && zip(t, l).allSatisfy { $0.0 == $0.1 || ($0.0 == 0 && $0.1 == -100) }) }
        }
        let packed = BatchPlan(examples: examples, batchSize: 2, seqLen: 8, packing: true, pad: 0, seed: 1).batches(epoch: 0)
        let rows = packed.flatMap(\.tokens)
        #expect(rows.dropLast().allSatisfy { $0.count == 8 })
        // Every token is in a window except a final window of one token (it would predict nothing).
        let total = examples.reduce(0) { $0 + $1.tokens.count }
        #expect(rows.flatMap { $0 }.filter { $0 != 0 }.count == total - (total % 8 == 1 ? 1 : 0))
    }
}
