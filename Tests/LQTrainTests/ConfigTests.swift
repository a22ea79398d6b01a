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

    @Test func optimizerKeysAreTypedAndValidated() throws {
        func error(_ overrides: [String]) -> String {
            do { _ = try TrainConfig(yaml: minimal, overrides: overrides); return "no error" } catch { return "\(error)" }
        }
        let defaults = try TrainConfig(yaml: minimal)
        #expect(defaults.optimizer == .adamw && defaults.adam.beta1 == 0.9 && defaults.adam.beta2 == 0.999)
        #expect(defaults.adam.epsilon == 1e-8 && defaults.adam.weightDecay == 0)
        let c = try TrainConfig(yaml: minimal, overrides: ["train.optimizer=adamw8bit", "train.adam_beta2=0.95", "train.adam_epsilon=1e-6",
                                                           "train.adam_beta1=0", "train.weight_decay=0.01"])
        #expect(c.optimizer == .adamw8bit && c.adam == AdamW.Settings(beta1: 0, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.01))
        #expect(try TrainConfig(yaml: c.yaml()) == c)
        #expect(c.yaml().contains("  optimizer: adamw8bit\n  adam_beta1: 0.0\n  adam_beta2: 0.95\n  adam_epsilon: 1e-06\n"))
        #expect(error(["train.adam_beta1=1"]) == "'train.adam_beta1' must be in 0.0..<1.0 (got 1.0)")
        #expect(error(["train.adam_beta2=-0.1"]) == "'train.adam_beta2' must be in 0.0..<1.0 (got -0.1)")
        #expect(error(["train.adam_epsilon=0"]) == "'train.adam_epsilon' must be above 0.0 and at most 1.0 (got 0.0)")
        #expect(error(["train.adam_epsilon=null"]) == "'train.adam_epsilon' cannot be null")
        #expect(error(["train.adam_beta=0.9"]) == "unknown key 'train.adam_beta' (did you mean 'train.adam_beta1'?)")
        #expect(error(["train.min_8bit_size=-1"]) == "'train.min_8bit_size' must be in 0...2147483647 (got -1)")
    }

    @Test func theSchemaListsEveryKey() {
        let text = TrainConfig().yaml(help: true)
        for key in ["model:", "adapter_init:", "  mask_prompt:", "  rslora:", "  grad_checkpoint:", "  keep:", "  adam_beta1:",
                    "  adam_beta2:", "  adam_epsilon:", "  weight_decay:", "  min_8bit_size:"] { #expect(text.contains(key)) }
    }
}

/// The configurations the repository ships read without error and say what their comments say.
struct ShippedConfigTests {
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardized.path

    @Test func everyShippedConfigReads() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.configs).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(names.contains("lrec-smollm2.yaml") && names.contains("qlora-smollm2.yaml"))
        for name in names { _ = try TrainConfig(path: Self.configs + "/" + name) }
        let lrec = try TrainConfig(path: Self.configs + "/lrec-smollm2.yaml")
        #expect(lrec.teacher == "models/SmolLM2-135M-Instruct" && lrec.klWeight == 1 && lrec.ceWeight == 50)
        #expect(lrec.rank == 32 && lrec.alpha == 128 && lrec.dropout == 0.05 && lrec.lr == 3e-4 && lrec.adam.weightDecay == 1e-5)
        let qgalore = try TrainConfig(path: Self.configs + "/qgalore-smollm2.yaml")
        #expect(qgalore.method == .qGalore && qgalore.qgalore == QGaLoreSettings(), "the comment says: the reference's defaults")
        #expect(qgalore.lr == 1e-4 && qgalore.adam.beta2 == 0.95 && qgalore.optimizer == .adamw8bit && qgalore.maxGradNorm == nil)
    }
}
