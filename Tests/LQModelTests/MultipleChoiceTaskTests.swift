import Foundation
import LQModel
import LQTensor
import LQTestSupport
import Testing

/// Zero-shot multiple choice against lm-evaluation-harness itself (scripts/make-task-fixtures.py
/// runs lm_eval on these task files with the same model through transformers): the contexts and
/// continuations it builds, their token ids, each choice's log-likelihood (1e-4) and greedy flag,
/// and acc / acc_norm with their standard errors.
struct MultipleChoiceTaskTests {
    static let dir = modelFixtures + "/tasks"
    /// The tiny Llama with a tokenizer that the CLI tests use.
    static let tinyModel = RealModel.root + "/Tests/LQCLITests/Fixtures/mha"

    static func expected(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/expected-\(name).json"))) as! [String: Any]
    }

    static func check(model: LlamaModel, tokenizer: any Tokenizer, expected: [String: Any]) throws {
        let window = expected["max_length"] as! Int, prefix = expected["prefix_token_id"] as! Int
        let tasks = expected["tasks"] as! [String: [String: Any]]
        #expect(Set(tasks.keys) == Set(MultipleChoiceTask.allCases.map(\.rawValue)))
        for task in MultipleChoiceTask.allCases {
            let oracle = tasks[task.rawValue]!
            let items = try task.items(path: dir + "/\(task.rawValue).jsonl")
            let oracleItems = oracle["items"] as! [[String: Any]]
            #expect(items.count == oracleItems.count)
            let (score, scored) = try task.evaluate(items, model: model, tokenizer: tokenizer, prefixToken: prefix, window: window)
            for (i, (item, o)) in zip(items, oracleItems).enumerated() {
                #expect(item.gold == o["gold"] as! Int, "\(task) \(i): gold")
                let choices = o["choices"] as! [[String: Any]]
                #expect(item.requests.count == choices.count, "\(task) \(i): choices")
                for (k, (request, c)) in zip(item.requests, choices).enumerated() {
                    #expect(request.context == c["context"] as! String && request.continuation == c["continuation"] as! String,
                            "\(task) \(i).\(k): request \(request) vs \(c["context"]!) / \(c["continuation"]!)")
                    let ids = try HarnessScoring.encode(context: request.context, continuation: request.continuation, tokenizer: tokenizer, prefixToken: prefix)
                    #expect(ids.context == c["context_ids"] as! [Int] && ids.continuation == c["continuation_ids"] as! [Int], "\(task) \(i).\(k): token ids")
                    let ll = scored[i].logLikelihoods[k], expectedLL = c["loglikelihood"] as! Double
                    #expect(abs(ll.value - expectedLL) <= 1e-4 * max(1, abs(expectedLL)), "\(task) \(i).\(k): log-likelihood \(ll.value) vs \(expectedLL)")
                    #expect(ll.isGreedy == c["is_greedy"] as! Bool, "\(task) \(i).\(k): is_greedy")
                }
                #expect((scored[i].prediction == scored[i].gold ? 1.0 : 0.0) == o["acc"] as! Double, "\(task) \(i): acc")
                if task.hasNormalizedAccuracy {
                    #expect((scored[i].normalizedPrediction == scored[i].gold ? 1.0 : 0.0) == o["acc_norm"] as! Double, "\(task) \(i): acc_norm")
                }
            }
            #expect(abs(score.acc - (oracle["acc"] as! Double)) < 1e-12 && abs(score.accStderr - (oracle["acc_stderr"] as! Double)) < 1e-9, "\(task): acc")
            if task.hasNormalizedAccuracy {
                #expect(abs(score.accNorm! - (oracle["acc_norm"] as! Double)) < 1e-12
                        && abs(score.accNormStderr! - (oracle["acc_norm_stderr"] as! Double)) < 1e-9, "\(task): acc_norm")
            } else {
                #expect(score.accNorm == nil)
            }
        }
    }

    @Test func tinyModelMatchesTheHarness() throws {
        let model = try LlamaModel(directory: Self.tinyModel)
        let tokenizer = try loadTokenizer(directory: Self.tinyModel)
        try Self.check(model: model, tokenizer: tokenizer, expected: try Self.expected("mha"))
    }

    @Test(.enabled(if: RealModel.enabled(RealModel.smolLM2), "SmolLM2 not fetched (scripts/fetch-smollm2.sh)"))
    func smolLM2MatchesTheHarness() throws {
        let dir = RealModel.smolLM2
        try Self.check(model: try LlamaModel(directory: dir), tokenizer: try loadTokenizer(directory: dir), expected: try Self.expected("smollm2"))
    }

    @Test func badTaskFilesAreNamed() throws {
        let path = NSTemporaryDirectory() + "bad-piqa-\(getpid()).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 1}\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: TaskError.badRecord(at: path + ":2", detail: "is missing \"sol2\"")) { _ = try MultipleChoiceTask.piqa.items(path: path) }
        #expect(throws: TaskError.unknownTask(name: "mmlu", known: ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "cot-faithfulness"])) {
            _ = try EvaluationTask.named("mmlu")
        }
    }
}
