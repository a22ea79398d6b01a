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
    func bad(_ key: String, _ detail: String) -> GGUFError { .badMetadata(path: gguf.path, key: key, detail: detail) }

    public var architecture: String { gguf.metadata["general.architecture"]?.string ?? "?" }

    /// The model's dimensions from the metadata, each checked: what the tensors' shapes are then
    /// checked against.
    struct Hyperparameters {
        let hidden, heads, kvHeads, headDim, intermediate, layers, context, vocab: Int
        let rmsNormEps, ropeTheta: Float
    }

    func hyperparameters() throws -> Hyperparameters {
        let arch = architecture
        guard arch == "llama" else {
            throw ConvertError.unsupported(path: gguf.path, what: "architecture '\(arch)' is not supported (llama only)")
        }
        let p = arch + "."
        func positive(_ key: String, default d: Int? = nil) throws -> Int {
            guard let v = gguf.metadata[p + key] else {
                if let d { return d }
                throw GGUFError.missingKey(path: gguf.path, key: p + key)
            }
            guard let n = v.int, n > 0 else { throw bad(p + key, "must be a positive integer, not \(v)") }
            return n
        }
        func positiveReal(_ key: String, default d: Float?) throws -> Float {
            guard let v = gguf.metadata[p + key] else {
                if let d { return d }
                throw GGUFError.missingKey(path: gguf.path, key: p + key)
            }
            guard let x = v.double.map(Float.init), x.isFinite, x > 0 else { throw bad(p + key, "must be a positive finite number, not \(v)") }
            return x
        }
        let hidden = try positive("embedding_length"), heads = try positive("attention.head_count")
        let kvHeads = try positive("attention.head_count_kv", default: heads)
        guard hidden % heads == 0 else { throw bad(p + "embedding_length", "(\(hidden)) is not a multiple of \(p)attention.head_count (\(heads))") }
        guard heads % kvHeads == 0 else { throw bad(p + "attention.head_count_kv", "(\(kvHeads)) does not divide \(p)attention.head_count (\(heads))") }
        let headDim = hidden / heads
        guard headDim % 2 == 0 else { throw bad(p + "embedding_length", "gives heads of \(headDim) values; rotary embeddings need an even number") }
        let tokenCount = gguf.metadata["tokenizer.ggml.tokens"]?.array?.count ?? 0
        let vocab = try positive("vocab_size", default: tokenCount > 0 ? tokenCount : nil)
        guard tokenCount <= vocab else { throw bad(p + "vocab_size", "is \(vocab), fewer than the \(tokenCount) tokens of tokenizer.ggml.tokens") }
        return Hyperparameters(hidden: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
                               intermediate: try positive("feed_forward_length"), layers: try positive("block_count"),
                               context: try positive("context_length"), vocab: vocab,
                               rmsNormEps: try positiveReal("attention.layer_norm_rms_epsilon", default: nil),
                               ropeTheta: try positiveReal("rope.freq_base", default: 10000))
    }

    /// A token id from the metadata, if given: inside the vocabulary.
    func tokenID(_ key: String, vocab: Int) throws -> Int? {
        guard let v = gguf.metadata[key] else { return nil }
        guard let id = v.int, id >= 0, id < vocab else { throw bad(key, "is \(v), outside the vocabulary of \(vocab) tokens") }
        return id
    }

    /// Hugging Face's config.json for the model.
    public func config(dtype: DType) throws -> [String: Any] {
        let h = try hyperparameters()
        var config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": h.hidden, "intermediate_size": h.intermediate,
            "num_hidden_layers": h.layers, "num_attention_heads": h.heads, "num_key_value_heads": h.kvHeads,
            "head_dim": h.headDim, "max_position_embeddings": h.context,
            // GGUF keeps float32; its shortest decimal form is the value the model was made with.
            "rms_norm_eps": Double("\(h.rmsNormEps)")!, "rope_theta": Double("\(h.ropeTheta)")!,
            "rope_scaling": NSNull(), "vocab_size": h.vocab, "tie_word_embeddings": !gguf.contains("output.weight"),
            "hidden_act": "silu", "attention_bias": false, "attention_dropout": 0.0, "mlp_bias": false,
            "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": true,
            "torch_dtype": dtype.torchName ?? "float32",
        ]
        if let bos = try tokenID("tokenizer.ggml.bos_token_id", vocab: h.vocab) { config["bos_token_id"] = bos }
        if let eos = try tokenID("tokenizer.ggml.eos_token_id", vocab: h.vocab) { config["eos_token_id"] = eos }
        return config
    }

    /// GGUF tensor name → Hugging Face name.
    public static func huggingFaceName(_ name: String) -> String? { GGUFNames.huggingFace(name) }

    /// llama.cpp stores Q and K with each head's two rotary halves interleaved: GGUF row h·d + 2i + s
    /// holds Hugging Face row h·d + s·d/2 + i. This puts the rows back.
    public static func unpermute(_ t: Tensor, heads: Int) -> Tensor { reorderRotaryRows(t, heads: heads, toGGUF: false) }

    /// The inverse of `unpermute`: Hugging Face's rows in llama.cpp's order (convert_hf_to_gguf.py's
    /// `LlamaModel.permute`).
    public static func permute(_ t: Tensor, heads: Int) -> Tensor { reorderRotaryRows(t, heads: heads, toGGUF: true) }

    static func reorderRotaryRows(_ t: Tensor, heads: Int, toGGUF: Bool) -> Tensor {
        let rows = t.shape[0], cols = t.count / rows
        let d = rows / heads, half = d / 2
        let out = Tensor(zeros: t.shape)
        for h in 0..<heads {
            for i in 0..<half {
                for s in 0..<2 {
                    let gguf = h * d + 2 * i + s, hf = h * d + s * half + i
                    let (src, dst) = toGGUF ? (hf, gguf) : (gguf, hf)
                    (out.pointer + dst * cols).update(from: t.pointer + src * cols, count: cols)
                }
            }
        }
        return out
    }

    /// The row-major shape of every tensor the model needs (output.weight and the projections'
    /// biases may be absent), by GGUF name.
    func expectedShapes(_ h: Hyperparameters) -> [String: [Int]] {
        var shapes = ["token_embd.weight": [h.vocab, h.hidden], "output_norm.weight": [h.hidden], "output.weight": [h.vocab, h.hidden]]
        let kv = h.kvHeads * h.headDim
        for i in 0..<h.layers {
            let rows = ["attn_q": h.hidden, "attn_k": kv, "attn_v": kv, "attn_output": h.hidden]
            for (m, r) in rows {
                shapes["blk.\(i).\(m).weight"] = [r, h.hidden]
                shapes["blk.\(i).\(m).bias"] = [r]
            }
            shapes["blk.\(i).attn_norm.weight"] = [h.hidden]
            shapes["blk.\(i).ffn_norm.weight"] = [h.hidden]
            shapes["blk.\(i).ffn_gate.weight"] = [h.intermediate, h.hidden]
            shapes["blk.\(i).ffn_up.weight"] = [h.intermediate, h.hidden]
            shapes["blk.\(i).ffn_down.weight"] = [h.hidden, h.intermediate]
        }
        return shapes
    }

    /// The tensors checked against the metadata: each named, of its shape, none missing.
    func checkTensors(_ h: Hyperparameters) throws {
        guard !gguf.tensors.isEmpty else { throw GGUFError.noTensors(path: gguf.path) }
        let perLayer = 9
        guard h.layers <= gguf.tensors.count / perLayer else {
            throw bad(architecture + ".block_count", "is \(h.layers), but the file holds \(gguf.tensors.count) tensors (each layer needs \(perLayer))")
        }
        let shapes = expectedShapes(h)
        for info in gguf.tensors {
            guard Self.huggingFaceName(info.name) != nil else {
                throw ConvertError.unsupported(path: gguf.path, what: "tensor '\(info.name)' has no Hugging Face counterpart")
            }
            guard let expected = shapes[info.name] else {
                throw GGUFError.unexpectedTensor(path: gguf.path, tensor: info.name, detail: "belongs to no layer of the \(h.layers) that \(architecture).block_count gives")
            }
            guard info.shape == expected else {
                throw GGUFError.badTensorShape(path: gguf.path, tensor: info.name, expected: expected, actual: info.shape)
            }
        }
        for name in shapes.keys.sorted() where !name.hasSuffix(".bias") && name != "output.weight" && !gguf.contains(name) {
            throw GGUFError.tensorNotFound(path: gguf.path, tensor: name)
        }
    }

    /// The model tensors, decoded one at a time as they are written.
    public func tensors(dtype: DType) throws -> [PendingTensor] {
        let h = try hyperparameters()
        try checkTensors(h)
        var out: [PendingTensor] = []
        for info in gguf.tensors {
            let name = Self.huggingFaceName(info.name)!
            guard GGMLType(rawValue: info.rawType) != nil else {
                throw GGUFError.unsupportedTensorType(path: gguf.path, tensor: info.name, type: info.rawType)
            }
            let storeAs = dtype
            let permuteHeads = info.name.hasSuffix("attn_q.weight") ? h.heads : (info.name.hasSuffix("attn_k.weight") ? h.kvHeads : 0)
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
