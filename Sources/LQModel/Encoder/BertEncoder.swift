import CKernels
import Foundation
import LQTensor

/// LayerNorm's scale and shift [hidden].
public struct LayerNormWeights: Sendable {
    public let weight: Tensor, bias: Tensor
}

/// One encoder layer's weights (transformers' BertLayer): self-attention's four projections and
/// its LayerNorm, the intermediate and output projections and theirs. Each projection is any
/// linear operator, so a quantized checkpoint's layers load as they do for a decoder.
public final class BertLayer: @unchecked Sendable {
    public let query, key, value, attentionOutput: any LinearOperator
    public let attentionNorm: LayerNormWeights
    public let intermediate, output: any LinearOperator
    public let outputNorm: LayerNormWeights

    public init(query: any LinearOperator, key: any LinearOperator, value: any LinearOperator, attentionOutput: any LinearOperator,
                attentionNorm: LayerNormWeights, intermediate: any LinearOperator, output: any LinearOperator, outputNorm: LayerNormWeights) {
        self.query = query
        self.key = key
        self.value = value
        self.attentionOutput = attentionOutput
        self.attentionNorm = attentionNorm
        self.intermediate = intermediate
        self.output = output
        self.outputNorm = outputNorm
    }
}

/// A BERT-family encoder computing what transformers' BertModel computes for its last hidden
/// state, in fp32: word + absolute position + token-type embeddings and LayerNorm, then layers of
/// bidirectional self-attention and a GELU (erf) MLP, each followed by a residual and LayerNorm
/// (post-LN). The pooler is not part of it (sentence embeddings pool the hidden states).
///
/// A batch runs packed: the sequences' tokens are the rows of one matrix, with no padding rows,
/// and each attends only to its own tokens. For every real token that is exactly what BertModel
/// computes on a padded batch with an attention mask (a masked key gets weight 0), without the
/// work on padding.
public final class BertEncoder: @unchecked Sendable {
    public let config: BertConfig
    /// [vocab, hidden]; looked up row by row.
    public let wordEmbeddings: any LinearOperator
    public let positionEmbeddings: Tensor   // [maxPositions, hidden]
    public let tokenTypeEmbeddings: Tensor  // [typeVocab, hidden]
    public let embeddingNorm: LayerNormWeights
    public let layers: [BertLayer]

    public init(config: BertConfig, wordEmbeddings: any LinearOperator, positionEmbeddings: Tensor, tokenTypeEmbeddings: Tensor,
                embeddingNorm: LayerNormWeights, layers: [BertLayer]) {
        self.config = config
        self.wordEmbeddings = wordEmbeddings
        self.positionEmbeddings = positionEmbeddings
        self.tokenTypeEmbeddings = tokenTypeEmbeddings
        self.embeddingNorm = embeddingNorm
        self.layers = layers
    }

    /// Loads a model directory: config.json and safetensors with BertModel's tensor names (or
    /// BertFor*'s, under `bert.`), dense or quantized.
    public convenience init(directory: String) throws {
        let config = try BertConfig(directory: directory)
        let weights = try CheckpointWeights(directory: directory)
        let root = weights.contains("bert.embeddings.word_embeddings.weight") ? "bert." : ""
        let h = config.hiddenSize, f = config.intermediateSize
        func norm(_ name: String) throws -> LayerNormWeights {
            LayerNormWeights(weight: try weights.tensor(name + ".weight", [h]), bias: try weights.tensor(name + ".bias", [h]))
        }
        var layers: [BertLayer] = []
        for i in 0..<config.layerCount {
            let p = root + "encoder.layer.\(i)."
            layers.append(BertLayer(
                query: try weights.linear(p + "attention.self.query", out: h, in: h, bias: true),
                key: try weights.linear(p + "attention.self.key", out: h, in: h, bias: true),
                value: try weights.linear(p + "attention.self.value", out: h, in: h, bias: true),
                attentionOutput: try weights.linear(p + "attention.output.dense", out: h, in: h, bias: true),
                attentionNorm: try norm(p + "attention.output.LayerNorm"),
                intermediate: try weights.linear(p + "intermediate.dense", out: f, in: h, bias: true),
                output: try weights.linear(p + "output.dense", out: h, in: f, bias: true),
                outputNorm: try norm(p + "output.LayerNorm")))
        }
        let e = root + "embeddings."
        self.init(config: config,
                  wordEmbeddings: try weights.linear(e + "word_embeddings", out: config.vocabSize, in: h, keepHalf: true),
                  positionEmbeddings: try weights.tensor(e + "position_embeddings.weight", [config.maxPositions, h]),
                  tokenTypeEmbeddings: try weights.tensor(e + "token_type_embeddings.weight", [config.typeVocabSize, h]),
                  embeddingNorm: try norm(e + "LayerNorm"), layers: layers)
    }

    /// The last hidden states of `sequences` (token ids, each of 1 to maxPositions tokens, token
    /// type 0), packed: rows [Σ lengths, hidden], sequence after sequence. `eachLayer` sees the
    /// embeddings' output (0) and every layer's (1...layerCount) in the same layout.
    public func hiddenStates(_ sequences: [[Int]], eachLayer: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        var spans: [Range<Int>] = []
        var start = 0
        for s in sequences {
            precondition((1...config.maxPositions).contains(s.count), "a sequence of \(s.count) tokens (1 to \(config.maxPositions) fit)")
            spans.append(start..<(start + s.count))
            start += s.count
        }
        var x = embed(sequences, rows: start)
        eachLayer?(0, x)
        for (l, layer) in layers.enumerated() {
            x = encoderLayer(layer, x, spans: spans)
            eachLayer?(l + 1, x)
        }
        return x
    }

    /// LayerNorm(word + token type 0 + position) [rows, hidden], added in BertEmbeddings' order.
    func embed(_ sequences: [[Int]], rows: Int) -> Tensor {
        let h = config.hiddenSize
        let x = Tensor(uninitialized: [rows, h])
        var row = 0
        for s in sequences {
            for (position, id) in s.enumerated() {
                precondition((0..<config.vocabSize).contains(id), "token id \(id) outside the vocabulary of \(config.vocabSize)")
                let dst = x.pointer + row * h, type = tokenTypeEmbeddings.pointer, pos = positionEmbeddings.pointer + position * h
                wordEmbeddings.weightRow(id, into: dst)
                for j in 0..<h { dst[j] = (dst[j] + type[j]) + pos[j] }
                row += 1
            }
        }
        layerNorm(x, embeddingNorm, eps: config.layerNormEps)
        return x
    }

    /// One BertLayer: x1 = LN(x + O·attention(Q, K, V)); out = LN(x1 + W2·gelu(W1·x1)). [N, hidden] → [N, hidden].
    func encoderLayer(_ layer: BertLayer, _ x: Tensor, spans: [Range<Int>]) -> Tensor {
        let attended = selfAttention(q: layer.query(x), k: layer.key(x), v: layer.value(x), spans: spans)
        let x1 = layer.attentionOutput(attended)
        add(x1, x)
        layerNorm(x1, layer.attentionNorm, eps: config.layerNormEps)
        let m = layer.intermediate(x1)
        gelu(m)
        let out = layer.output(m)
        add(out, x1)
        layerNorm(out, layer.outputNorm, eps: config.layerNormEps)
        return out
    }

    /// softmax(Q·Kᵀ/√d)·V per head, each sequence's rows attending to its own rows only.
    /// q, k, v [N, heads·headDim] → [N, heads·headDim].
    func selfAttention(q: Tensor, k: Tensor, v: Tensor, spans: [Range<Int>]) -> Tensor {
        let hd = config.headDim, nh = config.headCount
        let out = Tensor(uninitialized: q.shape)  // every element is written by one product below
        let scale = 1 / Float(hd).squareRoot()
        let longest = spans.map(\.count).max() ?? 0
        // A job is one (sequence, head); its result does not depend on which thread runs it.
        Parallel.forEach(spans.count * nh) { jobs in
            let scores = Tensor(uninitialized: [longest * longest])
            for job in jobs {
                let rows = spans[job / nh], head = job % nh, n = rows.count
                let cols = (head * hd)..<((head + 1) * hd)
                let p = MatrixRef(base: scores.pointer, rows: n, cols: n, ld: n)
                gemm(q.block(rows: rows, cols: cols), k.block(rows: rows, cols: cols), transposeB: true, into: p, alpha: scale)
                for t in 0..<n { lq_softmax(p.base + t * n, Int64(n)) }
                gemm(p, v.block(rows: rows, cols: cols), into: out.block(rows: rows, cols: cols))
            }
        }
        return out
    }
}

/// x ← (x − mean) / √(var + eps) · weight + bias for each row of x [rows, hidden], as torch's
/// layer_norm (biased variance). The moments are summed in double: the row's result is then
/// fp32's rounding of the exact one, whatever order torch sums in.
func layerNorm(_ x: Tensor, _ norm: LayerNormWeights, eps: Float) {
    let rows = x.shape[0], h = x.shape[1]
    let w = norm.weight.pointer, b = norm.bias.pointer
    Parallel.forEach(rows, minChunk: 16) { range in
        for i in range {
            let row = x.pointer + i * h
            var sum = 0.0
            for j in 0..<h { sum += Double(row[j]) }
            let mean = sum / Double(h)
            var squares = 0.0
            for j in 0..<h { let d = Double(row[j]) - mean; squares += d * d }
            let rstd = 1 / (squares / Double(h) + Double(eps)).squareRoot()
            for j in 0..<h { row[j] = Float((Double(row[j]) - mean) * rstd) * w[j] + b[j] }
        }
    }
}

/// x ← x · Φ(x) = x/2 · (1 + erf(x/√2)), the exact GELU (transformers' "gelu"), elementwise.
func gelu(_ x: Tensor) {
    let n = x.count, p = x.pointer
    Parallel.forEach(n, minChunk: 1 << 14) { range in
        for i in range { p[i] = 0.5 * p[i] * (1 + erf(p[i] * Float(0.5).squareRoot())) }
    }
}
