import Foundation
import LQTrain
import Testing

struct ConfigTests {
    let minimal = "model: m\noutput_dir: o\ndata: {train: t.jsonl}\ntrain: {max_steps: 10}\n"

    @Test func defaultsOverridesAndTheResolvedYAML() throws {
        let c = try TrainConfig(yaml: minimal, overrides: ["train.lr=1e-4", "lora.targets=[q_proj, v_proj]", "train.max_grad_norm=null", "eval.every=5"])
        #expect(c.lr == 1e-4 && c.targets == ["q_proj", "v_proj"] && c.maxGradNorm == nil && c.evalEvery == 5)
        #expect(c.rank == 16 && c.batchSize == 4 && c.schedule == .cosine && c.maskPrompt)
        // The resolved YAML reads back to the same configuration.
        #expect(try TrainConfig(yaml: c.yaml()) == c)
        #expect(c.warmupSteps(total: 100) == 3)
        var steps = c
        steps.warmup = 20
        #expect(steps.warmupSteps(total: 100) == 20)
    }

    @Test func mistakesNameTheKeyAndSuggestTheNearest() {
        func error(_ yaml: String, _ overrides: [String] = []) -> String {
            do { _ = try TrainConfig(yaml: yaml, overrides: overrides); return "no error" } catch { return "\(error)" }
        }
        #expect(error(minimal + "ouput_dir: x\n") == "unknown key 'ouput_dir' (did you mean 'output_dir'?)")
        #expect(error(minimal, ["train.batchsize=3"]) == "unknown key 'train.batchsize' (did you mean 'train.batch_size'?)")
        #expect(error(minimal + "lora: {rnk: 3}\n") == "unknown key 'lora.rnk' (did you mean 'lora.rank'?)")
        #expect(error(minimal, ["train.batch_size=two"]) == "'train.batch_size' must be an integer (got two)")
        #expect(error(minimal, ["lora.dropout=1.5"]) == "'lora.dropout' must be in 0.0...0.99 (got 1.5)")
        #expect(error(minimal, ["train.optimizer=adam"]).hasPrefix("'train.optimizer' must be one of adamw, adamw8bit (got adam); did you mean 'adamw'?"))
        #expect(error(minimal, ["lora.targets=[q_proj, qproj]"]).contains("did you mean 'q_proj'?"))
        #expect(error("output_dir: o\ndata: {train: t}\ntrain: {max_steps: 1}\n") == "'model' is required")
        #expect(error("model: m\noutput_dir: o\ndata: {train: t}\n") == "'train.max_steps' or train.epochs must be set")
        #expect(error("model: m\noutput_dir: o\ndata: 3\n").contains("'data' must be a mapping"))
        #expect(error("- a\n- b\n").contains("must be a mapping"))
    }

    @Test func theSchemaListsEveryKey() {
        let text = TrainConfig().yaml(help: true)
        for key in ["model:", "adapter_init:", "  mask_prompt:", "  rslora:", "  grad_checkpoint:", "  keep:"] { #expect(text.contains(key)) }
    }
}
