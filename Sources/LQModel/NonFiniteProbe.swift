import LQTensor

/// Finds where a forward pass first computes a value that is not finite, so that a training run
/// stopping on a NaN loss names the layer and step of the pass at fault instead of only the loss.
final class NonFiniteProbe: ForwardObserver {
    private(set) var first: LinearSite?

    func observeInput(_ x: Tensor, of site: LinearSite) {
        guard first == nil, x.hasNonFinite else { return }
        first = site
    }
}

extension LlamaModel {
    /// In words, the first value of the forward pass over `tokens` (computed on the CPU, as the
    /// model's weights now are) that is not finite; nil when every activation and logit is finite.
    public func firstNonFinite(in tokens: [[Int]]) -> String? {
        let probe = NonFiniteProbe()
        let hidden = hostHiddenStates(tokens, cache: nil, observer: probe)
        if let site = probe.first, case let .projection(layer, p) = site {
            let where_: String
            switch p {
            case .q, .k, .v:
                where_ = "layer \(layer)'s input after its input_layernorm ("
                    + (layer == 0 ? "the token embeddings" : "layer \(layer - 1)'s output") + " or model.layers.\(layer).input_layernorm.weight)"
            case .o: where_ = "layer \(layer)'s attention output (its q/k/v projections or the attention scores)"
            case .gate, .up: where_ = "layer \(layer) after its attention residual and post_attention_layernorm"
            case .down: where_ = "layer \(layer)'s SwiGLU of gate_proj and up_proj"
            }
            return "\(where_), the input of \(site.module)"
        }
        if hidden.hasNonFinite { return "the final hidden states (layer \(layers.count - 1)'s down_proj output or model.norm)" }
        if logits(hidden).hasNonFinite { return "the logits (the LM head)" }
        return nil
    }
}

extension Tensor {
    var hasNonFinite: Bool { buffer.contains { !$0.isFinite } }
}
