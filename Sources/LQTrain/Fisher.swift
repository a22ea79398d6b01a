import Foundation
import LQFormats
import LQModel
import LQTensor

/// The empirical diagonal Fisher of the target weights: Σ over examples (batch 1) of the squared
/// gradient of each example's mean token loss, as LQ-LoRA's data-aware decomposition uses it.
public enum FisherEstimator {
    /// Accumulates over `examples`; returns the Fisher tensors by weight name ("model.layers.0.self_attn.q_proj.weight").
    public static func estimate(_ model: LlamaModel, examples: [Example], targets: [String],
                                progress: (Int) -> Void = { _ in }) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (i, layer) in model.layers.enumerated() {
            for (module, linear) in layer.linears where targets.contains(String(module.split(separator: ".").last!)) {
                let f = Tensor(zeros: [linear.outFeatures, linear.inFeatures])
                linear.squaredWeightGradients = f
                out.append(("model.layers.\(i).\(module).weight", f))
            }
        }
        defer { for layer in model.layers { for (_, linear) in layer.linears { linear.squaredWeightGradients = nil } } }
        var rng = SeededGenerator(seed: 0)
        for (k, e) in examples.enumerated() {
            _ = model.accumulateGradients(tokens: [e.tokens], labels: [e.labels], normalizer: e.targets, rng: &rng)
            progress(k + 1)
        }
        return out
    }
}
