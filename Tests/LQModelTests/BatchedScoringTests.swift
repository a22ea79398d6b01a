import Foundation
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// Batched log-likelihoods (contexts in one pass, continuations continuing copies of their cached
/// contexts in another, left-truncated requests whole in a third, all padded on the right) against
/// the plainest computation: each request alone, its whole input through `forward` with batch 1 and
/// no cache, log-softmax in Double here.
struct BatchedScoringTests {
    /// |Δ| allowed on a summed log-likelihood, relative to max(1, |value|): float rounding of
    /// products whose rows differ (SmolLM2 on the fixture tasks: 6.3e-6, 1.1e-4 absolute on −81).
    static let tolerance = 2e-5

    /// (Σ log p(target), greedy) of one request computed alone, as the harness defines it.
    static func alone(_ model: some CausalLM, context: [Int], continuation: [Int], window: Int) -> (value: Double, isGreedy: Bool) {
        let input = Array((context + continuation).suffix(window + 1).dropLast())
        let logits = model.forward([input]), vocab = model.vocabularySize
        var sum = 0.0, greedy = true
        for (i, target) in continuation.enumerated() {
            let row = (0..<vocab).map { Double(logits.pointer[(input.count - continuation.count + i) * vocab + $0]) }
            let top = row.max()!
            sum += row[target] - (top + log(row.reduce(0) { $0 + exp($1 - top) }))
            if row.firstIndex(of: top)! != target { greedy = false }
        }
        return (sum, greedy)
    }

    /// Groups whose lengths force padding in every pass: continuations of 1 to 9 tokens, a repeated
    /// request, winogrande's shape (contexts differing, one continuation each), and a group whose
    /// longer continuation no longer fits the window beside its context (left-truncated, whole)
    /// while its shorter one still shares the cache.
    static func mixedGroups(vocab: Int, window: Int) -> [ScoringGroup] {
        var rng = SeededGenerator(seed: 17)
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int.random(in: 0..<vocab, using: &rng) } }
        let repeated = tokens(3), winogrande = tokens(5)
        return [
            ScoringGroup(context: tokens(5), continuations: [tokens(1), tokens(4), tokens(9)]),
            ScoringGroup(context: tokens(17), continuations: [repeated, tokens(6), repeated]),
            ScoringGroup(context: tokens(8), continuations: [winogrande]),
            ScoringGroup(context: tokens(11), continuations: [winogrande]),
            ScoringGroup(context: tokens(window - 2), continuations: [tokens(2), tokens(7)]),
            ScoringGroup(context: tokens(window + 9), continuations: [tokens(4)]),
            ScoringGroup(context: [1], continuations: [tokens(2)]),
        ]
    }

    static func expectEqual(_ got: LogLikelihood, _ want: (value: Double, isGreedy: Bool), _ what: String) {
        #expect(abs(got.value - want.value) <= tolerance * max(1, abs(want.value)), "\(what): \(got.value) vs \(want.value) alone")
        #expect(got.isGreedy == want.isGreedy, "\(what): greedy")
    }

    /// `oracle`: the model each request runs alone on (default: the batched one).
    static func checkMixedGroups(_ model: some CausalLM, window: Int, oracle: (any CausalLM)? = nil) throws {
        let groups = mixedGroups(vocab: model.vocabularySize, window: window)
        #expect(groups[4].context.count + groups[4].continuations[1].count > window + 1, "a request left-truncated")
        let batched = try model.logLikelihoods(groups, window: window)
        let reference: any CausalLM = oracle ?? model
        for (g, group) in groups.enumerated() {
            for (k, c) in group.continuations.enumerated() {
                expectEqual(batched[g][k], alone(reference, context: group.context, continuation: c, window: window), "group \(g).\(k)")
            }
        }
        #expect(batched[1][0] == batched[1][2], "a repeated request ties exactly")
    }

    @Test(arguments: ["mha", "gqa_llama3", "tied", "qwen2_bias"])
    func mixedLengthsEqualEachRequestAlone(name: String) throws {
        let model = try LlamaModel(directory: modelFixtures + "/llama/" + name)
        try Self.checkMixedGroups(model, window: 32)
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2), "SmolLM2 not fetched (scripts/fetch-smollm2.sh)"))
    func smolLM2MixedLengthsEqualEachRequestAlone() throws {
        try Self.checkMixedGroups(try LlamaModel(directory: RealModel.smolLM2), window: 48)
    }

    /// Every fixture task scored in batches of 3 (the last one short) and of all 8 items: each
    /// item's log-likelihoods equal its requests scored alone, and acc / acc_norm pick the same.
    static func checkTasks(_ model: some CausalLM, tokenizer: any Tokenizer, fixture: String) throws {
        let expected = try MultipleChoiceTaskTests.expected(fixture)
        let window = expected["max_length"] as! Int, prefix = expected["prefix_token_id"] as! Int
        for task in MultipleChoiceTask.allCases {
            let items = try task.items(path: MultipleChoiceTaskTests.dir + "/\(task.rawValue).jsonl")
            let byThree = try task.evaluate(items, model: model, tokenizer: tokenizer, prefixToken: prefix, window: window, batch: 3).items
            let whole = try task.evaluate(items, model: model, tokenizer: tokenizer, prefixToken: prefix, window: window, batch: items.count).items
            for (i, item) in items.enumerated() {
                for (k, request) in item.requests.enumerated() {
                    let ids = try HarnessScoring.encode(context: request.context, continuation: request.continuation, tokenizer: tokenizer, prefixToken: prefix)
                    let want = alone(model, context: ids.context, continuation: ids.continuation, window: window)
                    expectEqual(byThree[i].logLikelihoods[k], want, "\(task) \(i).\(k), batches of 3")
                    expectEqual(whole[i].logLikelihoods[k], want, "\(task) \(i).\(k), one batch")
                }
                #expect(byThree[i].prediction == whole[i].prediction && byThree[i].normalizedPrediction == whole[i].normalizedPrediction,
                        "\(task) \(i): acc and acc_norm pick the same choice")
            }
        }
    }

    @Test func tinyModelTasksEqualEachRequestAlone() throws {
        let dir = MultipleChoiceTaskTests.tinyModel
        try Self.checkTasks(try LlamaModel(directory: dir), tokenizer: try loadTokenizer(directory: dir), fixture: "mha")
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2), "SmolLM2 not fetched (scripts/fetch-smollm2.sh)"))
    func smolLM2TasksEqualEachRequestAlone() throws {
        let dir = RealModel.smolLM2
        try Self.checkTasks(try LlamaModel(directory: dir), tokenizer: try loadTokenizer(directory: dir), fixture: "smollm2")
    }
}
