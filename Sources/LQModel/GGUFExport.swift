import Foundation
import LQFormats
import LQTensor

public enum GGUFExportError: Error, CustomStringConvertible, Equatable {
    case unsupportedModel(path: String, what: String)
    case unsupportedTokenizer(path: String, what: String)
    case adapterTargetUnnamed(path: String, tensor: String)
    case adapterShape(path: String, module: String, a: [Int], b: [Int], weight: [Int])
    case adapterWithoutMerge(adapter: String)
    case mergeWithoutAdapter
    case adapterType(type: String)

    public var description: String {
        switch self {
        case let .unsupportedModel(path, what): return "\(path): \(what)"
        case let .unsupportedTokenizer(path, what): return "\(path): \(what)"
        case let .adapterTargetUnnamed(path, tensor):
            return "\(path): '\(tensor)' adapts a module llama.cpp has no tensor name for (it names the seven projections and lm_head)"
        case let .adapterShape(path, module, a, b, weight):
            return "\(path): '\(module)' has lora_A \(a) and lora_B \(b), which do not fit its weight \(weight)"
        case let .adapterWithoutMerge(adapter):
            return "an adapter (\(adapter)) is exported with --merge (folded into the weights) or --adapter-only (llama.cpp's LoRA GGUF)"
        case .mergeWithoutAdapter: return "--merge needs --adapter DIR (the adapter to fold into the weights)"
        case let .adapterType(type):
            return "an adapter GGUF holds f32, f16 or bf16 matrices (convert_lora_to_gguf.py's types), not \(type)"
        }
    }
}

/// What `lqlora export --type` writes, and which GGML type each tensor gets, as llama.cpp decides it:
/// f32 / f16 / bf16 / q8_0 as `convert_hf_to_gguf.py --outtype` does (every matrix in that type,
/// 1-D tensors F32), q4_0 / q4_1 / q4_k / q5_k / q6_k as `llama-quantize` does for the file types
/// Q4_0, Q4_1, Q4_K_M, Q5_K_M and Q6_K without an importance matrix (`llama_tensor_get_type` in
/// src/llama-quant.cpp, the Llama branches: the output matrix, or the tied token embedding, in
/// Q6_K; attn_v and ffn_down of the layers `use_more_bits` picks in Q6_K for the _M types; a
/// matrix whose rows are not whole super-blocks falls back to Q5_0 / Q5_1 / Q8_0, and to F16
/// where not even 32-value blocks fit).
public enum GGUFFileType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k

    /// llama.cpp's `llama_ftype` (general.file_type).
    public var fileTypeID: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q4_k: return 15  // Q4_K_M
        case .q5_k: return 17  // Q5_K_M
        case .q6_k: return 18
        case .bf16: return 32
        }
    }

    /// The name llama.cpp's tools print for the file type.
    public var llamaName: String {
        switch self {
        case .q4_k: return "Q4_K_M"
        case .q5_k: return "Q5_K_M"
        default: return rawValue.uppercased()
        }
    }

    /// Whether llama-quantize (rather than convert_hf_to_gguf.py) makes this file type.
    public var madeByLlamaQuantize: Bool { ![.f32, .f16, .bf16, .q8_0].contains(self) }

    public var defaultType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q4_k: return .q4_K
        case .q5_k: return .q5_K
        case .q6_k: return .q6_K
        }
    }

    /// Types a matrix falls back to when its rows are not whole blocks (tensor_type_fallback).
    static func fallback(_ type: GGMLType, columns: Int) -> GGMLType {
        guard columns % type.block.values != 0 else { return type }
        let next: GGMLType
        switch type {
        case .q4_K: next = .q5_0
        case .q5_K: next = .q5_1
        case .q6_K: next = .q8_0
        default: next = type
        }
        return columns % next.block.values == 0 ? next : .f16
    }

    /// llama-quantize's use_more_bits: the first and last eighth of the layers and every third between.
    static func useMoreBits(_ layer: Int, _ layers: Int) -> Bool {
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
    }

    /// The GGML type of the tensor `name` (a GGUF name) of `shape` in a model of `layers` blocks
    /// whose token embedding is also its output matrix when `tied`.
    public func type(of name: String, shape: [Int], layers: Int, tied: Bool) -> GGMLType {
        let columns = shape.last ?? 1
        if shape.count < 2 || name.hasSuffix("_norm.weight") { return .f32 }
        switch self {
        case .f32, .f16, .bf16: return defaultType
        case .q8_0: return columns % 32 == 0 ? .q8_0 : .f16  // convert_hf_to_gguf: what Q8_0 cannot hold stays F16
        default: break
        }
        var type = defaultType
        let layer = name.hasPrefix("blk.") ? Int(name.split(separator: ".")[1]) ?? 0 : 0
        if name == "output.weight" || (tied && name == "token_embd.weight") {
            type = columns % defaultType.block.values != 0 ? .q8_0 : (defaultType != .q8_0 ? .q6_K : defaultType)
        } else if name.hasSuffix("attn_v.weight") || name.hasSuffix("ffn_down.weight") {
            if (self == .q4_k || self == .q5_k) && Self.useMoreBits(layer, layers) { type = .q6_K }
        }
        return Self.fallback(type, columns: columns)
    }
}

/// `lqlora export`: a model lqlora holds (dense, NormalFloat, LQ-LoRA's base, GPTQ/RTN; with an
/// adapter merged as dequant(W) + s·B·A) as a llama.cpp GGUF file, or an adapter as llama.cpp's
/// LoRA GGUF. Matrices are read, dequantized, merged, permuted and quantized one at a time while
/// the file is written, never the whole model in fp32.
public enum GGUFExport {
    public struct Summary: Sendable {
        public var tensors = 0
        public var merged = 0
        public var bytes = 0
        /// How many tensors got each GGML type.
        public var types: [String: Int] = [:]
    }

    /// The Llama-family config the export accepts (llama.cpp's "llama" architecture).
    static func config(_ directory: String) throws -> LlamaConfig {
        let config = try LlamaConfig(directory: directory)
        guard config.modelType == "llama" || config.modelType == "mistral" else {
            throw GGUFExportError.unsupportedModel(path: directory + "/config.json",
                                                   what: "model_type '\(config.modelType)' is exported as llama.cpp's llama architecture only for llama and mistral")
        }
        guard !config.qkvBias else {
            throw GGUFExportError.unsupportedModel(path: directory + "/config.json", what: "q/k/v biases are not part of llama.cpp's llama architecture")
        }
        return config
    }

    /// The PEFT pairs of an adapter by GGUF weight name, checked against the model's shapes.
    static func adapterPairs(_ adapter: String, weights: CheckpointWeights) throws -> (config: AdapterConfig, pairs: [String: (a: String, b: String)], file: SafeTensorsFile) {
        let config = try AdapterConfig(directory: adapter)
        let path = adapter + "/" + PEFTAdapter.weightsFile
        let file = try SafeTensorsFile(path: path)
        var pairs: [String: (a: String, b: String)] = [:]
        for name in file.tensorNames {
            guard name.hasPrefix(PEFTKeys.prefix), name.hasSuffix("." + LoRAMatrix.a.rawValue + ".weight") else {
                if name.hasSuffix("." + LoRAMatrix.b.rawValue + ".weight") { continue }
                throw GGUFExportError.adapterTargetUnnamed(path: path, tensor: name)
            }
            let module = String(name.dropFirst(PEFTKeys.prefix.count).dropLast(("." + LoRAMatrix.a.rawValue + ".weight").count))
            let bKey = PEFTKeys.lora(module: module, matrix: .b)
            guard let gguf = GGUFNames.gguf(module + ".weight"), !gguf.hasSuffix("_norm.weight"), gguf != "token_embd.weight",
                  file.contains(bKey) else { throw GGUFExportError.adapterTargetUnnamed(path: path, tensor: name) }
            let shape = try weights.shape(module + ".weight")
            let a = try file.entry(name).shape, b = try file.entry(bKey).shape
            guard a.count == 2, b.count == 2, a[0] == b[1], a[1] == shape[1], b[0] == shape[0] else {
                throw GGUFExportError.adapterShape(path: path, module: module, a: a, b: b, weight: shape)
            }
            pairs[gguf] = (name, bKey)
        }
        return (config, pairs, file)
    }

    /// Rows of Q and K are stored in llama.cpp's rotary order: the head count to permute by, or nil.
    static func permuteHeads(_ gguf: String, _ config: LlamaConfig) -> Int? {
        gguf.hasSuffix("attn_q.weight") ? config.headCount : gguf.hasSuffix("attn_k.weight") ? config.kvHeadCount : nil
    }

    /// Writes `model` (with `adapter` merged when given) to `path` as `type`.
    @discardableResult
    public static func model(_ model: String, adapter: String? = nil, type fileType: GGUFFileType, to path: String,
                             progress: ((Int, Int) -> Void)? = nil) throws -> Summary {
        let config = try Self.config(model)
        let weights = try CheckpointWeights(directory: model)
        let lora = try adapter.map { try adapterPairs($0, weights: weights) }
        let metadata = try GGUFModelMetadata.model(directory: model, config: config, fileType: fileType)

        // The tensors in llama.cpp's names, as convert_hf_to_gguf.py lists them.
        var names: [(gguf: String, hf: String)] = [("token_embd.weight", "model.embed_tokens.weight")]
        for layer in 0..<config.layerCount {
            for m in GGUFNames.block { names.append(("blk.\(layer).\(m.gguf).weight", "model.layers.\(layer).\(m.hf).weight")) }
        }
        names.append(("output_norm.weight", "model.norm.weight"))
        let tied = !weights.contains("lm_head.weight")
        if !tied { names.append(("output.weight", "lm_head.weight")) }
        if let lora, let unused = lora.pairs.keys.first(where: { key in !names.contains { $0.gguf == key } }) {
            throw GGUFExportError.adapterTargetUnnamed(path: lora.file.path, tensor: lora.pairs[unused]!.a)
        }

        var summary = Summary()
        var specs: [GGUFTensorSpec] = []
        if let freqs = GGUFModelMetadata.ropeFactors(config) {
            specs.append(GGUFTensorSpec(name: "rope_freqs.weight", shape: [freqs.count], type: .f32) { raw in
                freqs.withUnsafeBytes { raw.copyMemory(from: $0) }
            })
        }
        for (gguf, hf) in names {
            let shape = try weights.shape(hf)
            let type = fileType.type(of: gguf, shape: shape, layers: config.layerCount, tied: tied)
            let pair = lora?.pairs[gguf]
            let heads = permuteHeads(gguf, config)
            if pair != nil { summary.merged += 1 }
            specs.append(GGUFTensorSpec(name: gguf, shape: shape, type: type) { raw in
                var w = try weights.dense(hf)
                if let pair, let lora {
                    let a = try lora.file.floatTensor(pair.a), b = try lora.file.floatTensor(pair.b)
                    gemm(b.matrix, a.matrix, into: w.matrix, alpha: lora.config.scale, beta: 1)
                }
                if let heads { w = GGUFConverter.permute(w, heads: heads) }
                try encode(w, as: type, into: raw)
            })
            summary.types[type.name, default: 0] += 1
        }
        summary.tensors = specs.count
        if let progress {
            var done = 0
            specs = specs.map { s in
                GGUFTensorSpec(name: s.name, shape: s.shape, type: s.type) { raw in
                    try s.fill(raw)
                    done += 1
                    progress(done, specs.count)
                }
            }
        }
        try GGUFWriter.write(metadata: metadata, tensors: specs, to: path)
        summary.bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return summary
    }

    /// An fp32 matrix in `type`, into exactly its bytes.
    static func encode(_ w: Tensor, as type: GGMLType, into raw: UnsafeMutableRawBufferPointer) throws {
        let values = UnsafeBufferPointer(w.buffer)
        switch type {
        case .f32: raw.copyMemory(from: UnsafeRawBufferPointer(values))
        case .f16: DTypeConversion.fromFloat32(values, dtype: .f16, into: raw)
        case .bf16: DTypeConversion.fromFloat32(values, dtype: .bf16, into: raw)
        default: GGMLBlocks.quantize(type, values, rows: w.shape.count > 1 ? w.shape[0] : 1, into: raw)
        }
    }

    /// Writes `adapter` (trained on `model`) as llama.cpp's LoRA GGUF, as convert_lora_to_gguf.py
    /// does: general.type "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted matrix
    /// `<name>.lora_a` [rank, in] and `<name>.lora_b` [out, rank], B's rows permuted for Q and K.
    /// llama.cpp scales by alpha / rank; an rsLoRA adapter's alpha is written as scale · rank so
    /// that llama.cpp applies PEFT's alpha / √rank.
    @discardableResult
    public static func adapter(_ adapter: String, model: String, type: GGUFFileType = .f32, to path: String) throws -> Summary {
        guard [.f32, .f16, .bf16].contains(type) else { throw GGUFExportError.adapterType(type: type.rawValue) }
        let config = try Self.config(model)
        let weights = try CheckpointWeights(directory: model)
        let lora = try adapterPairs(adapter, weights: weights)
        let alpha = lora.config.useRSLoRA ? Double(lora.config.scale) * Double(lora.config.rank) : lora.config.alpha
        let metadata = GGUFModelMetadata.adapter(model: model, adapter: adapter, alpha: Float(alpha), fileType: type)
        // Block order, then the output matrix, as the base model lists its tensors.
        let order = lora.pairs.keys.sorted { a, b in
            func key(_ n: String) -> (Int, Int) {
                let p = n.split(separator: ".")
                guard p.first == "blk", p.count > 2, let l = Int(p[1]) else { return (Int.max, 0) }
                return (l, GGUFNames.block.firstIndex { $0.gguf == p[2] } ?? 0)
            }
            return key(a) < key(b)
        }
        var specs: [GGUFTensorSpec] = []
        for gguf in order {
            let pair = lora.pairs[gguf]!
            let heads = permuteHeads(gguf, config)
            let aShape = try lora.file.entry(pair.a).shape, bShape = try lora.file.entry(pair.b).shape
            let file = lora.file
            specs.append(GGUFTensorSpec(name: gguf + ".lora_a", shape: aShape, type: type.defaultType) { raw in
                try encode(file.floatTensor(pair.a).copy(), as: type.defaultType, into: raw)
            })
            specs.append(GGUFTensorSpec(name: gguf + ".lora_b", shape: bShape, type: type.defaultType) { raw in
                var b = try file.floatTensor(pair.b).copy()
                if let heads { b = GGUFConverter.permute(b, heads: heads) }
                try encode(b, as: type.defaultType, into: raw)
            })
        }
        try GGUFWriter.write(metadata: metadata, tensors: specs, to: path)
        var summary = Summary()
        summary.tensors = specs.count
        summary.merged = order.count
        summary.types[type.defaultType.name] = specs.count
        summary.bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return summary
    }
}
