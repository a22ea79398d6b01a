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

/// Continuations scored against one context: the choices of an item that share it, or one of
/// winogrande's options (there the context changes with the option and the continuation is shared).
public struct ScoringGroup: Sendable, Equatable {
    public let context: [Int]
    public let continuations: [[Int]]

    public init(context: [Int], continuations: [[Int]]) {
        self.context = context
        self.continuations = continuations
    }
}

extension CausalLM {
    /// Every group's continuations scored within a window of `window` tokens, in at most three
    /// passes. A request's input is (context + continuation)'s last window + 1 tokens without the
    /// final one, as the harness truncates. Requests that fit the window whole share their
    /// context's pass: the contexts, packed, fill a KV cache, and every continuation continues its
    /// own copy of its context in a second packed pass. The rest (every request where the cache
    /// cannot be forked) run whole in a third, padded on the right, after their last real token,
    /// where causal attention keeps the padding from every real position. The results are those of
    /// one request at a time, to float rounding. A request that occurs twice is scored once:
    /// different rows of one product may round differently, and equal requests must tie exactly
    /// (argmax takes the first of equals). Errors name the group.
    public func logLikelihoods(_ groups: [ScoringGroup], window: Int) throws -> [[LogLikelihood]] {
        var requests: [Request] = [], known: [Request: Int] = [:], requestOf: [[Int]] = []
        for (g, group) in groups.enumerated() {
            precondition(!group.context.isEmpty, "a request needs a context token to predict its first token")
            requestOf.append([])
            for c in group.continuations {
                if c.isEmpty { throw TaskError.emptyContinuation(item: g) }
                if c.count > window { throw TaskError.contextTooLong(item: g, tokens: c.count, window: window) }
                let request = Request(context: group.context, continuation: c)
                if known[request] == nil {
                    known[request] = requests.count
                    requests.append(request)
                }
                requestOf[g].append(known[request]!)
            }
        }
        let fits = requests.map { forksCaches && $0.context.count + $0.continuation.count <= window + 1 }
        let shares = requests.indices.filter { fits[$0] }, alone = requests.indices.filter { !fits[$0] }
        var passes: [Tensor] = [], predictions: [Prediction] = []
        if !shares.isEmpty { scoreSharingContexts(shares, of: requests, passes: &passes, predictions: &predictions) }
        if !alone.isEmpty { scoreWhole(alone, of: requests, window: window, passes: &passes, predictions: &predictions) }
        let scored = score(predictions, in: passes, requests: requests.count)
        return requestOf.map { $0.map { scored[$0] } }
    }

    /// The contexts of `shares` once each, as one pass into a cache; then every continuation but
    /// its last token, continuing a copy of its context, as a second. Both packed, without padding.
    private func scoreSharingContexts(_ shares: [Int], of requests: [Request], passes: inout [Tensor], predictions: inout [Prediction]) {
        var slot: [[Int]: Int] = [:], contexts: [[Int]] = []
        for r in shares where slot[requests[r].context] == nil {
            slot[requests[r].context] = contexts.count
            contexts.append(requests[r].context)
        }
        let cache = makeCache(batch: contexts.count, capacity: contexts.map(\.count).max()!)
        let contextRows = PassLayout(lengths: contexts.map(\.count), starts: contexts.map { _ in 0 }).offsets
        let contextPass = passes.count, restPass = passes.count + 1
        passes.append(hiddenStates(contexts, cache: cache, continuingAfter: contexts.map { _ in 0 }))
        let continued = shares.filter { requests[$0].continuation.count > 1 }
        if !continued.isEmpty {
            let rests = continued.map { Array(requests[$0].continuation.dropLast()) }, starts = continued.map { requests[$0].context.count }
            let capacity = max(cache.length, zip(starts, rests).map { $0 + $1.count }.max()!)
            let copies = cache.gather(continued.map { slot[requests[$0].context]! }, capacity: capacity)
            passes.append(hiddenStates(rests, cache: copies, continuingAfter: starts))
        }
        let restRows = Dictionary(uniqueKeysWithValues: zip(continued, PassLayout(lengths: continued.map { requests[$0].continuation.count - 1 },
                                                                                  starts: continued.map { _ in 0 }).offsets))
        // The context's last position predicts the first token; the continuation's own positions the rest.
        for r in shares {
            let request = requests[r]
            let last = contextRows[slot[request.context]!] + request.context.count - 1
            for (i, target) in request.continuation.enumerated() {
                predictions.append(i == 0 ? Prediction(pass: contextPass, row: last, target: target, request: r)
                                          : Prediction(pass: restPass, row: restRows[r]! + i - 1, target: target, request: r))
            }
        }
    }

    /// Each of `alone` as its own sequence without a cache (left-truncated to the window), as one batch.
    private func scoreWhole(_ alone: [Int], of requests: [Request], window: Int, passes: inout [Tensor], predictions: inout [Prediction]) {
        let inputs = alone.map { Array((requests[$0].context + requests[$0].continuation).suffix(window + 1).dropLast()) }
        let length = inputs.map(\.count).max()!
        passes.append(hiddenStates(padded(inputs, to: length), cache: nil))
        for (b, (r, input)) in zip(alone, inputs).enumerated() {
            let c = requests[r].continuation
            for (i, target) in c.enumerated() {
                predictions.append(Prediction(pass: passes.count - 1, row: b * length + input.count - c.count + i, target: target, request: r))
            }
        }
    }

    /// log p(target) and whether it is the argmax, for every prediction, summed per request in
    /// token order; the logits of at most logitsRowsPerChunk rows exist at once.
    private func score(_ predictions: [Prediction], in passes: [Tensor], requests: Int) -> [LogLikelihood] {
        let h = hiddenSize, vocab = vocabularySize
        var logp = [Double](repeating: 0, count: predictions.count), greedy = [Bool](repeating: false, count: predictions.count)
        for c0 in stride(from: 0, to: predictions.count, by: logitsRowsPerChunk) {
            let chunk = predictions[c0..<min(predictions.count, c0 + logitsRowsPerChunk)]
            let hidden = Tensor(uninitialized: [chunk.count, h])
            for (i, p) in chunk.enumerated() { (hidden.pointer + i * h).update(from: passes[p.pass].pointer + p.row * h, count: h) }
            let logits = self.logits(hidden)
            logp.withUnsafeMutableBufferPointer { lp in
                greedy.withUnsafeMutableBufferPointer { gr in
                    Parallel.forEach(chunk.count, minChunk: 8) { range in
                        for i in range {
                            let row = logits.pointer + i * vocab, target = chunk[c0 + i].target
                            lp[c0 + i] = Double(row[target]) - lq_logsumexp(row, Int64(vocab))
                            var best = 0
                            for j in 1..<vocab where row[j] > row[best] { best = j }
                            gr[c0 + i] = best == target
                        }
                    }
                }
            }
        }
        var sums = [Double](repeating: 0, count: requests), allGreedy = [Bool](repeating: true, count: requests)
        for (p, (value, isBest)) in zip(predictions, zip(logp, greedy)) {
            sums[p.request] += value
            allGreedy[p.request] = allGreedy[p.request] && isBest
        }
        return zip(sums, allGreedy).map { LogLikelihood(value: $0, isGreedy: $1) }
    }

    /// Sequences of at most `length` tokens padded on the right to it; the padding id is any valid one.
    private func padded(_ sequences: [[Int]], to length: Int) -> [[Int]] {
        sequences.map { $0 + Array(repeating: 0, count: length - $0.count) }
    }
}

/// One (context, continuation) request.
private struct Request: Hashable {
    let context: [Int], continuation: [Int]
}

/// A continuation token to score: which pass's hidden row predicts it.
private struct Prediction {
    let pass: Int, row: Int
    let target: Int
    let request: Int
}
