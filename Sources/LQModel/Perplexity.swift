import CKernels
import Foundation
import LQFormats
import LQTensor

/// How perplexity windows are laid over the token stream.
public enum PerplexityMethod: Sendable, Equatable {
    /// transformers' sliding window (docs "Perplexity of fixed-length models"): windows of `context`
    /// tokens advancing by `stride`, each scoring only tokens not scored before.
    case huggingFace(context: Int, stride: Int)
    /// llama.cpp's `llama-perplexity`: disjoint chunks of `context`, scoring the second half of each.
    case llamaCpp(context: Int, bos: Int?)
    /// GPTQ's evaluation (and the LLaMA-3 low-bit study's): ⌊n/context⌋ disjoint windows, the tail
    /// dropped, every position but the first scored; ppl = exp(mean of the windows' mean NLL).
    case gptq(context: Int)
}

public struct PerplexityResult: Sendable, Codable {
    public let perplexity: Double
    /// Mean negative log-likelihood per scored token (nats).
    public let nll: Double
    /// Standard error of the perplexity as llama.cpp computes it: PPL·√((⟨nll²⟩ − ⟨nll⟩²)/(N − 1)).
    public let perplexity_error: Double
    public let tokens: Int
    public let seconds: Double
    public let tokens_per_second: Double
}

/// One forward window: the tokens, and which positions' next-token predictions count.
struct EvalWindow {
    let tokens: [Int]
    /// Positions p whose prediction of tokens[p + 1] is scored.
    let scored: Range<Int>
    /// Weight each scored token gets in the total (transformers' bookkeeping; 1 elsewhere).
    let weight: Double
    let weightedCount: Int
}

public enum Perplexity {
    static func windows(_ tokens: [Int], method: PerplexityMethod) throws -> [EvalWindow] {
        let n = tokens.count
        var out: [EvalWindow] = []
        switch method {
        case let .huggingFace(context, stride):
            var prevEnd = 0, begin = 0
            while begin < n {
                let end = min(begin + context, n)
                let target = end - prevEnd
                let slice = Array(tokens[begin..<end])
                let len = slice.count
                // Labels before len − target are masked; the loss shifts labels left by one, so the
                // first label is never predicted. The docs weight each window by (valid labels − 1).
                let firstLabel = max(len - target, 1)
                let scored = (firstLabel - 1)..<(len - 1)
                let valid = target
                if !scored.isEmpty, valid - 1 > 0 {
                    out.append(EvalWindow(tokens: slice, scored: scored, weight: Double(valid - 1) / Double(scored.count),
                                          weightedCount: valid - 1))
                }
                prevEnd = end
                if end == n { break }
                begin += stride
            }
        case let .gptq(context):
            let chunks = n / context
            guard chunks >= 1 else {
                throw ModelError.unsupported(path: "eval", what: "GPTQ perplexity with \(n) tokens (it needs one window of \(context))")
            }
            for c in 0..<chunks {
                out.append(EvalWindow(tokens: Array(tokens[(c * context)..<((c + 1) * context)]), scored: 0..<(context - 1), weight: 1,
                                      weightedCount: context - 1))
            }
        case let .llamaCpp(context, bos):
            let chunks = n / context
            guard chunks >= 2 else {
                throw ModelError.unsupported(path: "eval", what: "llama.cpp perplexity with \(n) tokens (it needs at least 2 chunks of \(context))")
            }
            for c in 0..<chunks {
                var slice = Array(tokens[(c * context)..<((c + 1) * context)])
                if let bos { slice[0] = bos }
                let first = context / 2
                out.append(EvalWindow(tokens: slice, scored: first..<(context - 1), weight: 1, weightedCount: context - 1 - first))
            }
        }
        return out
    }

    /// Evaluates `tokens` with `model`, running up to `batch` equal-length windows per forward pass;
    /// `progress(done, total, tokensSoFar)` is called after each batch.
    public static func evaluate(_ model: some CausalLM, tokens: [Int], method: PerplexityMethod, batch: Int = 1,
                                progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> PerplexityResult {
        let start = Date()
        let windows = try windows(tokens, method: method)
        var weightedSum = 0.0, plainSum = 0.0, sumSquares = 0.0, weighted = 0.0, count = 0, processed = 0
        var i = 0
        while i < windows.count {
            var j = i + 1
            while j < windows.count && j - i < max(1, batch) && windows[j].tokens.count == windows[i].tokens.count { j += 1 }
            let group = Array(windows[i..<j])
            let hidden = model.hiddenStates(group.map(\.tokens), cache: nil)
            let length = group[0].tokens.count
            for (b, w) in group.enumerated() {
                let rows = (b * length + w.scored.lowerBound)..<(b * length + w.scored.upperBound)
                let nll = model.negativeLogLikelihoods(hidden, rows: rows, targets: w.scored.map { w.tokens[$0 + 1] })
                for v in nll {
                    weightedSum += v * w.weight
                    plainSum += v
                    sumSquares += v * v
                    count += 1
                }
                weighted += Double(w.weightedCount)
                processed += w.tokens.count
            }
            i = j
            progress(i, windows.count, processed)
        }
        let seconds = Date().timeIntervalSince(start)
        guard weighted > 0 else {
            throw ModelError.unsupported(path: "eval", what: "a text of \(tokens.count) token\(tokens.count == 1 ? "" : "s") (perplexity needs at least 2: one to predict from, one to score)")
        }
        let mean = weightedSum / weighted
        // A NaN or infinity here comes from the model (non-finite weights, or a config such as a
        // negative rms_norm_eps), never from the text: report it as an error, not as a result.
        guard mean.isFinite else {
            throw ModelError.notFinite(what: "the mean log-likelihood (\(mean))", cause: NonFiniteWeights.describe(in: model.sources))
        }
        let ppl = exp(mean)
        let plainMean = plainSum / Double(max(count, 1))
        let variance = count > 1 ? max(0, sumSquares / Double(count) - plainMean * plainMean) / Double(count - 1) : 0
        return PerplexityResult(perplexity: ppl, nll: mean, perplexity_error: ppl * variance.squareRoot(), tokens: Int(weighted),
                                seconds: seconds, tokens_per_second: Double(processed) / max(seconds, 1e-9))
    }
}

extension LlamaModel {
    /// −log p(target | position) for the given rows of the final hidden states, computing logits
    /// in chunks of rows so the full [rows, vocab] matrix never exists at once (on the GPU when the
    /// forward pass runs there: the logits then never leave the device).
    public func negativeLogLikelihoods(_ hidden: Tensor, rows: Range<Int>, targets: [Int]) -> [Double] {
        if let device = deviceForward {
            do { return try device.negativeLogLikelihoods(hidden, rows: rows, targets: targets) } catch { leaveDevice(after: error) }
        }
        var out = [Double](repeating: 0, count: rows.count)
        let vocab = config.vocabSize
        let chunk = logitsRowsPerChunk
        var r = rows.lowerBound
        while r < rows.upperBound {
            let r1 = min(rows.upperBound, r + chunk)
            let logits = self.logits(hidden.rows(r..<r1).copy())
            let base = r - rows.lowerBound
            out.withUnsafeMutableBufferPointer { o in
                Parallel.forEach(r1 - r, minChunk: 8) { range in
                    for i in range {
                        let row = logits.pointer + i * vocab
                        o[base + i] = lq_logsumexp(row, Int64(vocab)) - Double(row[targets[base + i]])
                    }
                }
            }
            r = r1
        }
        return out
    }
}

/// Where a non-finite result comes from: the first weight holding NaN or ±inf in a model's files.
public enum NonFiniteWeights {
    /// (file, tensor, the first bad value) of the first floating-point tensor holding a NaN or
    /// infinity in the safetensors files of `directories`, in their order.
    public static func first(in directories: [String]) -> (file: String, tensor: String, value: Float)? {
        for directory in directories {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
            for name in names {
                guard let file = try? SafeTensorsFile(path: directory + "/" + name) else { continue }
                for e in file.entries where [.f32, .f16, .bf16, .f64].contains(e.dtype) {
                    guard let t = try? file.floatTensor(e) else { continue }
                    if let bad = UnsafeBufferPointer(t.buffer).first(where: { !$0.isFinite }) { return (file.path, e.name, bad) }
                }
            }
        }
        return nil
    }

    /// The first such weight named, or that there is none (then config.json or the text is at fault).
    static func describe(in directories: [String]) -> String {
        guard let (file, tensor, value) = first(in: directories) else {
            return "every weight is finite, so check config.json (rms_norm_eps, rope settings)"
        }
        return "\(file): weight '\(tensor)' holds \(value)"
    }
}
