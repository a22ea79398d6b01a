import Foundation
import LQFormats
import LQTensor

public enum ConvertError: Error, CustomStringConvertible, Equatable {
    case unsupported(path: String, what: String)

    public var description: String {
        switch self {
        case let .unsupported(path, what): return "\(path): \(what)"
        }
    }
}

/// Turns a llama.cpp GGUF file of a Llama-family model into a Hugging Face directory: config.json,
/// model.safetensors (tensors renamed, decoded to the chosen dtype, Q/K rows put back in Hugging
/// Face's rotate-half order), tokenizer.json, tokenizer_config.json and generation_config.json.
public struct GGUFConverter {
    public let gguf: GGUFFile

    public init(gguf: GGUFFile) { self.gguf = gguf }

    func meta(_ key: String) throws -> GGUFValue {
        guard let v = gguf.metadata[key] else { throw GGUFError.missingKey(path: gguf.path, key: key) }
        return v
    }
    func int(_ key: String) throws -> Int {
        guard let v = try meta(key).int else { throw ConvertError.unsupported(path: gguf.path, what: "metadata '\(key)' is not an integer") }
        return v
    }

    public var architecture: String { gguf.metadata["general.architecture"]?.string ?? "?" }

    /// Hugging Face's config.json for the model.
    public func config(dtype: DType) throws -> [String: Any] {
        let arch = architecture
        guard arch == "llama" else {
            throw ConvertError.unsupported(path: gguf.path, what: "architecture '\(arch)' is not supported (llama only)")
        }
        let p = arch + "."
        let hidden = try int(p + "embedding_length"), heads = try int(p + "attention.head_count")
        let kvHeads = gguf.metadata[p + "attention.head_count_kv"]?.int ?? heads
        let vocab = gguf.metadata[p + "vocab_size"]?.int ?? (gguf.metadata["tokenizer.ggml.tokens"]?.array?.count ?? 0)
        let eps = Float(try meta(p + "attention.layer_norm_rms_epsilon").double ?? 1e-5)
        var config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": hidden, "intermediate_size": try int(p + "feed_forward_length"),
            "num_hidden_layers": try int(p + "block_count"), "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "head_dim": hidden / heads, "max_position_embeddings": try int(p + "context_length"),
            // GGUF keeps float32; its shortest decimal form is the value the model was made with.
            "rms_norm_eps": Double("\(eps)")!, "rope_theta": Double("\(Float(gguf.metadata[p + "rope.freq_base"]?.double ?? 10000))")!,
            "rope_scaling": NSNull(), "vocab_size": vocab, "tie_word_embeddings": !gguf.contains("output.weight"),
            "hidden_act": "silu", "attention_bias": false, "attention_dropout": 0.0, "mlp_bias": false,
            "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": true,
            "torch_dtype": dtype.torchName ?? "float32",
        ]
        if let bos = gguf.metadata["tokenizer.ggml.bos_token_id"]?.int { config["bos_token_id"] = bos }
        if let eos = gguf.metadata["tokenizer.ggml.eos_token_id"]?.int { config["eos_token_id"] = eos }
        return config
    }

    /// GGUF tensor name → Hugging Face name.
    public static func huggingFaceName(_ name: String) -> String? {
        let fixed = ["token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                     "output.weight": "lm_head.weight"]
        if let f = fixed[name] { return f }
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), parts[3] == "weight" || parts[3] == "bias" else { return nil }
        let modules = ["attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                       "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                       "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"]
        guard let m = modules[String(parts[2])] else { return nil }
        return "model.layers.\(layer).\(m).\(parts[3])"
    }

    /// llama.cpp stores Q and K with each head's two rotary halves interleaved: GGUF row h·d + 2i + s
    /// holds Hugging Face row h·d + s·d/2 + i. This puts the rows back.
    public static func unpermute(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0], cols = t.count / rows
        let d = rows / heads, half = d / 2
        let out = Tensor(zeros: t.shape)
        for h in 0..<heads {
            for i in 0..<half {
                for s in 0..<2 {
                    let src = h * d + 2 * i + s, dst = h * d + s * half + i
                    (out.pointer + dst * cols).update(from: t.pointer + src * cols, count: cols)
                }
            }
        }
        return out
    }

    /// The model tensors, decoded one at a time as they are written.
    public func tensors(dtype: DType) throws -> [PendingTensor] {
        let heads = try int(architecture + ".attention.head_count")
        let kvHeads = gguf.metadata[architecture + ".attention.head_count_kv"]?.int ?? heads
        var out: [PendingTensor] = []
        for info in gguf.tensors {
            guard let name = Self.huggingFaceName(info.name) else {
                throw ConvertError.unsupported(path: gguf.path, what: "tensor '\(info.name)' has no Hugging Face counterpart")
            }
            guard GGMLType(rawValue: info.rawType) != nil else {
                throw GGUFError.unsupportedTensorType(path: gguf.path, tensor: info.name, type: info.rawType)
            }
            let storeAs = dtype
            let permuteHeads = info.name.hasSuffix("attn_q.weight") ? heads : (info.name.hasSuffix("attn_k.weight") ? kvHeads : 0)
            let file = gguf
            out.append(PendingTensor(name: name, dtype: storeAs, shape: info.shape) { raw in
                var t = try file.floatTensor(info)
                if permuteHeads > 0 { t = GGUFConverter.unpermute(t, heads: permuteHeads) }
                DTypeConversion.fromFloat32(UnsafeBufferPointer(t.buffer), dtype: storeAs, into: raw)
            })
        }
        return out
    }
}
