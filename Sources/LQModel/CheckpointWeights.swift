import LQFormats
import LQQuant
import LQTensor

/// A model directory's tensors by name, each checked against the shape the architecture expects,
/// and its linear layers in whatever storage the checkpoint holds them (dense fp32, 16-bit,
/// NormalFloat, GPTQ/RTN integers). Every architecture's loader reads its weights through this.
struct CheckpointWeights {
    let checkpoint: Checkpoint
    private let stored: QuantizedWeights
    private var quantized: Set<String> { stored.normalFloat }
    private var gptq: GPTQFormat.Settings? { stored.gptq }
    /// The file errors name: the safetensors file, or a sharded checkpoint's index.
    let path: String

    init(directory: String) throws {
        checkpoint = try Checkpoint(path: directory)
        stored = try QuantizedWeights(checkpoint)
        path = checkpoint.files.count == 1 ? checkpoint.files[0].path : checkpoint.directory + "/" + Checkpoint.indexFileName
    }

    func contains(_ name: String) -> Bool { checkpoint.contains(name) }

    /// The tensor `name` as fp32 (a view of the mapping for F32 data).
    func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        guard checkpoint.contains(name) else { throw ModelError.missingWeight(path: path, tensor: name) }
        let t = try checkpoint.floatTensor(name)
        guard t.shape == shape else { throw ModelError.badShape(path: path, tensor: name, expected: shape, actual: t.shape) }
        return t
    }

    /// The weight `name` ("….weight") as an fp32 copy of its shape [out, in], whatever its storage:
    /// dense, or dequantized (NormalFloat / LQ-LoRA's grid, GPTQ/RTN integers). One matrix at a time.
    func dense(_ name: String) throws -> Tensor {
        if stored.isQuantized(name) { return try stored.dense(name) }
        guard checkpoint.contains(name) else { throw ModelError.missingWeight(path: path, tensor: name) }
        return try checkpoint.floatTensor(name).copy()
    }

    /// The shape of the weight `name` in any storage, without reading its values.
    func shape(_ name: String) throws -> [Int] {
        if stored.isQuantized(name) { return try stored.shape(name) }
        guard checkpoint.contains(name) else { throw ModelError.missingWeight(path: path, tensor: name) }
        return try checkpoint.entry(name).shape
    }

    /// The linear layer `name` (`name.weight`, `name.bias`, or its quantized tensors) of shape [out, in].
    /// keepHalf: a BF16/F16 weight stays 16-bit (the embeddings and LM head: the largest matrices,
    /// whose fp32 copy would cost the most memory and decoding bandwidth; and for generation every
    /// projection). Otherwise a projection is widened once here (and its 16-bit pages released):
    /// keeping it 16-bit halves a dense model's memory and decoding's bytes, but cost 15 % of eval
    /// speed on SmolLM2 (every window widens every panel again).
    func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool = false, keepHalf: Bool = false) throws -> any LinearOperator {
        let weight = name + ".weight"
        let b = bias ? try tensor(name + ".bias", [out]) : nil
        if keepHalf, checkpoint.contains(weight), let w = try checkpoint.halfMatrix(weight) {
            guard w.rows == out && w.cols == inFeatures else {
                throw ModelError.badShape(path: path, tensor: weight, expected: [out, inFeatures], actual: [w.rows, w.cols])
            }
            return HalfLinear(weight: w, bias: b)
        } else if let gptq, GPTQFormat.contains(name, in: checkpoint) {
            let q = try GPTQFormat.load(name, from: checkpoint, settings: gptq)
            guard q.rows == out && q.cols == inFeatures else {
                throw ModelError.badShape(path: path, tensor: name + ".qweight", expected: [out, inFeatures], actual: [q.rows, q.cols])
            }
            return UniformLinear(weight: q, bias: b)
        } else if quantized.contains(weight) {
            let q = try QuantizedStorage.load(weight, from: checkpoint).matrix
            guard q.rows == out && q.cols == inFeatures else {
                throw ModelError.badShape(path: path, tensor: weight, expected: [out, inFeatures], actual: [q.rows, q.cols])
            }
            return QuantizedLinear(weight: q, bias: b)
        }
        let dense = DenseLinear(weight: try tensor(weight, [out, inFeatures]), bias: b)
        // A 16-bit weight was widened into a copy: its pages of the mapping are not read again.
        let (file, entry) = try checkpoint.locate(weight)
        if entry.dtype != .f32 { file.release(entry) }
        return dense
    }
}
