import Foundation
import LQTestSupport
import Testing

/// `lqlora eval --task`: the harness's numbers for the tiny model (the library's oracle test,
/// MultipleChoiceTaskTests, checks every log-likelihood), and named refusals.
struct TaskCommandTests {
    static let tasks = CLI.root + "/Tests/LQModelTests/Fixtures/tasks"

    @Test(builtBinary)
    func printsTheHarnessAccuracies() throws {
        let expected = try CLI.jsonFile(Self.tasks + "/expected-mha.json")["tasks"] as! [String: [String: Any]]
        for (task, oracle) in expected {
            let out = try CLI.json(try CLI.succeed(["eval", "--model", CLI.model, "--task", task, "--data", Self.tasks + "/\(task).jsonl", "--json"]))
            #expect(out["acc"] as? Double == oracle["acc"] as? Double && out["items"] as? Int == 8, "\(task): \(out)")
            #expect(relativelyClose(out["acc_stderr"] as! Double, oracle["acc_stderr"] as! Double, 1e-9) || (oracle["acc_stderr"] as! Double) == 0)
            #expect((out["acc_norm"] as? Double) == (oracle["acc_norm"] as? Double), "\(task): acc_norm")
        }
    }

    /// --batch sets how many items share a pass, never the scores (arc_challenge holds exact ties).
    @Test(builtBinary)
    func batchDoesNotChangeTheScores() throws {
        let expected = try CLI.jsonFile(Self.tasks + "/expected-mha.json")["tasks"] as! [String: [String: Any]]
        for task in ["arc_challenge", "winogrande"] {
            for batch in ["1", "3"] {
                let out = try CLI.json(try CLI.succeed(["eval", "--model", CLI.model, "--task", task, "--data", Self.tasks + "/\(task).jsonl",
                                                        "--batch", batch, "--json"]))
                #expect(out["acc"] as? Double == expected[task]!["acc"] as? Double, "\(task), --batch \(batch): \(out)")
                #expect((out["acc_norm"] as? Double) == (expected[task]!["acc_norm"] as? Double), "\(task), --batch \(batch): acc_norm")
            }
        }
        let refused: [([String], String)] = [
            (["--task", "piqa", "--data", Self.tasks + "/piqa.jsonl", "--batch", "0"], "--batch must be at least 1"),
            (["--task", "cot-faithfulness", "--data", CLI.root + "/data/cot/gsm8k-sample.jsonl", "--batch", "2"],
             "--batch does not apply to --task cot-faithfulness"),
        ]
        for (args, message) in refused {
            let r = try CLI.run(["eval", "--model", CLI.model] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    @Test(builtBinary)
    func badTaskInputIsRefusedByName() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try "{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": [\"A\", \"B\"]}}\n".write(toFile: dir.file("arc.jsonl"), atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--task", "mmlu", "--data", Self.tasks + "/piqa.jsonl"], "unknown task 'mmlu' (known: piqa, arc_easy, arc_challenge, hellaswag, winogrande, cot-faithfulness)"),
            (["--task", "arc_easy", "--data", dir.file("arc.jsonl")], dir.file("arc.jsonl") + ":1: is missing \"answerKey\""),
            (["--task", "piqa", "--data", Self.tasks + "/piqa.jsonl", "--stride", "4"], "--stride does not apply to --task"),
            (["--task", "piqa", "--data", Self.tasks + "/piqa.jsonl", "--ctx", "8"], "more than the 8-token window"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(["eval", "--model", CLI.model] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
