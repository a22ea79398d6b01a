import LQFormats

extension LlamaConfig {
    /// [out, in] of a decoder block's projection.
    public func shape(of p: Projection) -> (out: Int, in: Int) {
        let q = headCount * headDim, kv = kvHeadCount * headDim
        switch p {
        case .q: return (q, hiddenSize)
        case .k, .v: return (kv, hiddenSize)
        case .o: return (hiddenSize, q)
        case .gate, .up: return (intermediateSize, hiddenSize)
        case .down: return (hiddenSize, intermediateSize)
        }
    }

    /// Every tensor a dense checkpoint of this configuration holds, with its shape, in the order
    /// the loader reads them; lm_head.weight only when the head is not tied to the embeddings.
    public func denseTensors(separateHead: Bool) -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = []
        for layer in 0..<layerCount {
            let prefix = "model.layers.\(layer)."
            out += [(prefix + "input_layernorm.weight", [hiddenSize]), (prefix + "post_attention_layernorm.weight", [hiddenSize])]
            for p in Projection.allCases {
                let (rows, cols) = shape(of: p)
                let site = LinearSite.projection(layer: layer, p)
                out.append((site.weightName, [rows, cols]))
                if qkvBias && [.q, .k, .v].contains(p) { out.append((site.module + ".bias", [rows])) }
            }
        }
        out += [("model.embed_tokens.weight", [vocabSize, hiddenSize]), ("model.norm.weight", [hiddenSize])]
        if separateHead { out.append(("lm_head.weight", [vocabSize, hiddenSize])) }
        return out
    }
}

/// A model directory checked against its config.json from the safetensors headers alone (no
/// tensor is read), before a command that rewrites it writes anything: a missing or unsupported
/// config.json, a missing, misshapen or already quantized tensor is an error naming it, instead
/// of a "complete" output that eval then rejects.
public enum CheckpointValidation {
    public static let denseTypes: Set<DType> = [.f32, .f16, .bf16]

    /// Throws unless `checkpoint` holds every tensor of a supported architecture in a dense type.
    public static func requireDense(_ checkpoint: Checkpoint) throws {
        let configPath = checkpoint.directory + "/config.json"
        guard let json = try checkpoint.config() else {
            throw ModelError.unsupported(path: configPath, what: "a model directory without config.json (the architecture cannot be checked)")
        }
        let modelType = json["model_type"] as? String ?? "llama"
        let path = checkpoint.files.count == 1 ? checkpoint.files[0].path : checkpoint.directory + "/" + Checkpoint.indexFileName
        if BertConfig.supportedTypes.contains(modelType) {
            // Encoders are small: the loader itself checks every tensor.
            try requireDenseTypes(checkpoint, path: path)
            _ = try BertEncoder(directory: checkpoint.directory)
            return
        }
        guard LlamaConfig.supportedTypes.contains(modelType) else {
            throw ModelError.unsupported(path: configPath, what: "model_type '\(modelType)' (supported: \((LlamaConfig.supportedTypes + BertConfig.supportedTypes).joined(separator: ", ")))")
        }
        let config = try LlamaConfig(json: json, path: configPath)
        let separateHead = !config.tieWordEmbeddings && checkpoint.contains("lm_head.weight")
        for (name, shape) in config.denseTensors(separateHead: separateHead) {
            guard checkpoint.contains(name) else { throw ModelError.missingWeight(path: path, tensor: name) }
            let entry = try checkpoint.entry(name)
            guard denseTypes.contains(entry.dtype) else { throw notDense(entry, path: path) }
            guard entry.shape == shape else { throw ModelError.badShape(path: path, tensor: name, expected: shape, actual: entry.shape) }
        }
    }

    private static func requireDenseTypes(_ checkpoint: Checkpoint, path: String) throws {
        for name in checkpoint.tensorNames {
            let entry = try checkpoint.entry(name)
            if !denseTypes.contains(entry.dtype) { throw notDense(entry, path: path) }
        }
    }

    private static func notDense(_ entry: TensorEntry, path: String) -> ModelError {
        .unsupported(path: path, what: "quantizing weight '\(entry.name)' stored as \(entry.dtype.rawValue) (an already quantized checkpoint? quantize reads F32, F16 or BF16)")
    }
}
