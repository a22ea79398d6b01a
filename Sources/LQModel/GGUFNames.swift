/// llama.cpp's tensor names for the Llama family against Hugging Face's (gguf-py's tensor map,
/// `MODEL_TENSOR` for `MODEL_ARCH.LLAMA`): the one table that import and export both read.
public enum GGUFNames {
    /// Whole-model tensors: GGUF name, Hugging Face name.
    static let fixed: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ]
    /// A block's modules: GGUF name, Hugging Face module within the block.
    static let block: [(gguf: String, hf: String)] = [
        ("attn_norm", "input_layernorm"), ("attn_q", Projection.q.module), ("attn_k", Projection.k.module),
        ("attn_v", Projection.v.module), ("attn_output", Projection.o.module), ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", Projection.gate.module), ("ffn_up", Projection.up.module), ("ffn_down", Projection.down.module),
    ]

    /// GGUF tensor name → Hugging Face name ("blk.3.attn_q.weight" → "model.layers.3.self_attn.q_proj.weight").
    public static func huggingFace(_ name: String) -> String? {
        if let f = fixed.first(where: { $0.gguf == name }) { return f.hf }
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), parts[3] == "weight" || parts[3] == "bias",
              let m = block.first(where: { $0.gguf == parts[2] }) else { return nil }
        return "model.layers.\(layer).\(m.hf).\(parts[3])"
    }

    /// Hugging Face tensor name → GGUF name, the inverse of `huggingFace`.
    public static func gguf(_ name: String) -> String? {
        if let f = fixed.first(where: { $0.hf == name }) { return f.gguf }
        let parts = name.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = String(parts[3])
        for suffix in [".weight", ".bias"] where rest.hasSuffix(suffix) {
            let module = String(rest.dropLast(suffix.count))
            if let m = block.first(where: { $0.hf == module }) { return "blk.\(layer).\(m.gguf)\(suffix)" }
        }
        return nil
    }
}
