import CKernels
import Foundation
import LQTensor

/// A continuation's log-likelihood given its context, as lm-evaluation-harness's
/// `loglikelihood` returns it: Σ log p(token) over the continuation, and whether greedy
/// decoding would have produced it.
public struct LogLikelihood: Sendable, Equatable {
    public let value: Double
    public let isGreedy: Bool
}

/// How the harness (v0.4, HFLM) turns a request into tokens and scores it.
public enum HarnessScoring {
    /// `_encode_pair`: trailing spaces of the context move to the continuation; the whole string is
    /// encoded and split at the context's own encoding's length, with the tokenizer's own special
    /// tokens (lm_eval 0.4.13 leaves add_special_tokens to the tokenizer: a BOS post-processor adds
    /// BOS before the context). An empty context becomes `prefixToken` (the tokenizer's BOS, else its EOS).
    public static func encode(context: String, continuation: String, tokenizer: any Tokenizer, prefixToken: Int) throws -> (context: [Int], continuation: [Int]) {
        if context.isEmpty { return ([prefixToken], try tokenizer.encode(continuation, addSpecialTokens: false)) }
        var context = context, continuation = continuation
        let trimmed = context.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        if trimmed.count < context.count {
            continuation = String(context.dropFirst(trimmed.count)) + continuation
            context = trimmed
        }
        let whole = try tokenizer.encode(context + continuation, addSpecialTokens: true)
        let contextIDs = try tokenizer.encode(context, addSpecialTokens: true)
        return (contextIDs, Array(whole.dropFirst(contextIDs.count)))
    }
}

extension CausalLM {
    /// Scores continuations that share one context, within a window of `window` tokens: the input
    /// is (context + continuation)'s last window + 1 tokens without the final one, as the harness
    /// truncates. When every request fits the window whole, the context runs once into a KV cache
    /// that each continuation forks; otherwise each request runs on its own.
    public func logLikelihoods(context: [Int], continuations: [[Int]], window: Int) throws -> [LogLikelihood] {
        for (k, c) in continuations.enumerated() {
            if c.isEmpty { throw TaskError.emptyContinuation(item: k) }
            if c.count > window { throw TaskError.contextTooLong(item: k, tokens: c.count, window: window) }
        }
        let fits = continuations.allSatisfy { context.count + $0.count <= window + 1 } && !context.isEmpty
        guard fits, forksCaches else {
            return continuations.map { c in
                let input = Array((context + c).suffix(window + 1).dropLast())
                let hidden = hiddenStates([input], cache: nil)
                return score(hidden, rows: (input.count - c.count)..<input.count, targets: c)
            }
        }
        let cache = makeCache(batch: 1, capacity: context.count + (continuations.map(\.count).max() ?? 1))
        let prompt = hiddenStates([context], cache: cache)
        let last = prompt.rows((context.count - 1)..<context.count).copy()
        return continuations.map { c in
            // The context's last position predicts the first token; the continuation's own positions the rest.
            let rest = c.count > 1 ? hiddenStates([Array(c.dropLast())], cache: cache.fork()) : nil
            let hidden = Tensor(uninitialized: [c.count, hiddenSize])
            hidden.pointer.update(from: last.pointer, count: hiddenSize)
            if let rest { (hidden.pointer + hiddenSize).update(from: rest.pointer, count: rest.count) }
            return score(hidden, rows: 0..<c.count, targets: c)
        }
    }

    /// Σ log softmax(logits)[target] over `rows` of the hidden states, and whether each target is the argmax.
    func score(_ hidden: Tensor, rows: Range<Int>, targets: [Int]) -> LogLikelihood {
        let logits = self.logits(hidden.rows(rows).copy())
        let vocab = vocabularySize
        var sum = 0.0, greedy = true
        for (i, t) in targets.enumerated() {
            let row = logits.pointer + i * vocab
            sum += Double(row[t]) - lq_logsumexp(row, Int64(vocab))
            var best = 0
            for j in 1..<vocab where row[j] > row[best] { best = j }
            if best != t { greedy = false }
        }
        return LogLikelihood(value: sum, isGreedy: greedy)
    }
}

/// A task's accuracy as the harness reports it: the mean of 0/1 per item and its standard error
/// (sample standard deviation / √n).
public struct TaskScore: Sendable, Codable, Equatable {
    public let task: String
    public let items: Int
    public let acc: Double
    public let accStderr: Double
    public let accNorm: Double?
    public let accNormStderr: Double?
    public let seconds: Double
    public let itemsPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case task, items, acc, seconds
        case accStderr = "acc_stderr", accNorm = "acc_norm", accNormStderr = "acc_norm_stderr", itemsPerSecond = "items_per_second"
    }

    /// The mean and its standard error of 0/1 outcomes.
    static func meanAndStderr(_ x: [Double]) -> (Double, Double) {
        let n = Double(x.count), mean = x.reduce(0, +) / n
        guard x.count > 1 else { return (mean, .nan) }
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        return (mean, (variance / n).squareRoot())
    }
}

/// One item's outcome: the choices' log-likelihoods and what acc and acc_norm picked.
public struct ItemScore: Sendable, Equatable {
    public let logLikelihoods: [LogLikelihood]
    public let prediction: Int
    public let normalizedPrediction: Int
    public let gold: Int
}

extension MultipleChoiceTask {
    /// Scores every item: acc = argmax of the summed log-likelihoods, acc_norm = argmax of the sums
    /// divided by each choice's length in characters (the first maximum on ties, as numpy's argmax).
    public func evaluate(_ items: [MultipleChoiceItem], model: some CausalLM, tokenizer: any Tokenizer, prefixToken: Int, window: Int,
                         progress: (Int) -> Void = { _ in }) throws -> (score: TaskScore, items: [ItemScore]) {
        let start = Date()
        var out: [ItemScore] = []
        for (i, item) in items.enumerated() {
            let encoded = try item.requests.map { try HarnessScoring.encode(context: $0.context, continuation: $0.continuation, tokenizer: tokenizer, prefixToken: prefixToken) }
            var lls: [LogLikelihood] = []
            // Requests sharing a context (all but winogrande's) are scored together.
            var k = 0
            while k < encoded.count {
                var group = [encoded[k].continuation]
                var j = k + 1
                while j < encoded.count && encoded[j].context == encoded[k].context { group.append(encoded[j].continuation); j += 1 }
                do { lls += try model.logLikelihoods(context: encoded[k].context, continuations: group, window: window) } catch let TaskError.contextTooLong(_, tokens, w) {
                    throw TaskError.contextTooLong(item: i, tokens: tokens, window: w)
                } catch TaskError.emptyContinuation {
                    throw TaskError.emptyContinuation(item: i)
                }
                k = j
            }
            let values = lls.map(\.value)
            let pred = values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) }!
            let normalized = zip(values, item.lengths).map { $0 / Double($1) }
            let predNorm = normalized.indices.max { normalized[$0] < normalized[$1] || (normalized[$0] == normalized[$1] && $0 > $1) }!
            out.append(ItemScore(logLikelihoods: lls, prediction: pred, normalizedPrediction: predNorm, gold: item.gold))
            progress(i + 1)
        }
        let (acc, accErr) = TaskScore.meanAndStderr(out.map { $0.prediction == $0.gold ? 1 : 0 })
        let (norm, normErr) = TaskScore.meanAndStderr(out.map { $0.normalizedPrediction == $0.gold ? 1 : 0 })
        let seconds = Date().timeIntervalSince(start)
        return (TaskScore(task: rawValue, items: out.count, acc: acc, accStderr: accErr, accNorm: hasNormalizedAccuracy ? norm : nil,
                          accNormStderr: hasNormalizedAccuracy ? normErr : nil, seconds: seconds,
                          itemsPerSecond: Double(out.count) / max(seconds, 1e-9)), out)
    }
}
