import Foundation

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

    /// acc picks the argmax of the summed log-likelihoods, acc_norm the argmax of the sums divided
    /// by each choice's length in characters (the first maximum on ties, as numpy's argmax).
    init(_ item: MultipleChoiceItem, logLikelihoods: [LogLikelihood]) {
        func argmax(_ x: [Double]) -> Int { x.indices.max { x[$0] < x[$1] || (x[$0] == x[$1] && $0 > $1) }! }
        let values = logLikelihoods.map(\.value)
        self.logLikelihoods = logLikelihoods
        prediction = argmax(values)
        normalizedPrediction = argmax(zip(values, item.lengths).map { $0 / Double($1) })
        gold = item.gold
    }
}

extension MultipleChoiceTask {
    /// Items scored together by default: measured on SmolLM2-135M (README, evaluation).
    public static let itemsPerBatch = 8

    /// Scores every item, `batch` items at a time (their requests in a few batched passes; the
    /// results do not depend on it, to float rounding), and reports acc (and acc_norm).
    public func evaluate(_ items: [MultipleChoiceItem], model: some CausalLM, tokenizer: any Tokenizer, prefixToken: Int, window: Int,
                         batch: Int = itemsPerBatch, progress: (Int) -> Void = { _ in }) throws -> (score: TaskScore, items: [ItemScore]) {
        precondition(batch >= 1, "a batch holds at least one item")
        let start = Date()
        var out: [ItemScore] = []
        for first in stride(from: 0, to: items.count, by: batch) {
            let chunk = first..<min(items.count, first + batch)
            var groups: [ScoringGroup] = [], itemOfGroup: [Int] = []
            for i in chunk {
                let encoded = try items[i].requests.map {
                    try HarnessScoring.encode(context: $0.context, continuation: $0.continuation, tokenizer: tokenizer, prefixToken: prefixToken)
                }
                // Requests sharing a context (all but winogrande's) share its pass.
                var k = 0
                while k < encoded.count {
                    var j = k + 1
                    while j < encoded.count && encoded[j].context == encoded[k].context { j += 1 }
                    groups.append(ScoringGroup(context: encoded[k].context, continuations: encoded[k..<j].map(\.continuation)))
                    itemOfGroup.append(i)
                    k = j
                }
            }
            let scored: [[LogLikelihood]]
            do { scored = try model.logLikelihoods(groups, window: window) } catch let TaskError.contextTooLong(g, tokens, w) {
                throw TaskError.contextTooLong(item: itemOfGroup[g], tokens: tokens, window: w)
            } catch let TaskError.emptyContinuation(g) {
                throw TaskError.emptyContinuation(item: itemOfGroup[g])
            }
            for i in chunk {
                let lls = zip(itemOfGroup, scored).filter { $0.0 == i }.flatMap(\.1)
                out.append(ItemScore(items[i], logLikelihoods: lls))
                progress(i + 1)
            }
        }
        let (acc, accErr) = TaskScore.meanAndStderr(out.map { $0.prediction == $0.gold ? 1 : 0 })
        let (norm, normErr) = TaskScore.meanAndStderr(out.map { $0.normalizedPrediction == $0.gold ? 1 : 0 })
        let seconds = Date().timeIntervalSince(start)
        return (TaskScore(task: rawValue, items: out.count, acc: acc, accStderr: accErr, accNorm: hasNormalizedAccuracy ? norm : nil,
                          accNormStderr: hasNormalizedAccuracy ? normErr : nil, seconds: seconds,
                          itemsPerSecond: Double(out.count) / max(seconds, 1e-9)), out)
    }
}
