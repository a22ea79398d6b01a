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
        let sink = SquaredGradients(model: model, targets: targets)
        var rng = SeededGenerator(seed: 0)
        for (k, e) in examples.enumerated() {
            _ = model.accumulateGradients(tokens: [e.tokens], labels: [e.labels], normalizer: e.targets, into: sink, rng: &rng)
            progress(k + 1)
        }
        return sink.sites.map { ($0.weightName, sink.sums[$0]!) }
    }
}

/// Adds the elementwise square of each target weight's ∂L/∂W into its sum; trains nothing.
private final class SquaredGradients: GradientSink {
    let sites: [LinearSite]
    var sums: [LinearSite: Tensor] = [:]

    init(model: LlamaModel, targets: [String]) {
        var sites: [LinearSite] = []
        for (i, layer) in model.layers.enumerated() {
            for (p, linear) in layer.linears where targets.contains(p.shortName) {
                let site = LinearSite.projection(layer: i, p)
                sites.append(site)
                sums[site] = Tensor(zeros: [linear.outFeatures, linear.inFeatures])
            }
        }
        self.sites = sites
    }

    func wantsWeightGradient(at site: LinearSite) -> Bool { sums[site] != nil }

    func receiveWeightGradient(_ g: Tensor, at site: LinearSite) {
        guard let fisher = sums[site] else { return }
        Parallel.forEach(g.count, minChunk: 1 << 16) { r in
            for i in r { fisher.pointer[i] += g.pointer[i] * g.pointer[i] }
        }
    }
}
