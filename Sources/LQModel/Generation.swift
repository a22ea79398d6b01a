import Foundation
import LQTensor

/// Autoregressive decoding with a KV cache: the prompt in one pass, then one token per step.
public enum Generation {
    public struct Result {
        /// The new tokens, without the stop token that ended them.
        public let tokens: [Int]
        public let promptSeconds: Double
        public let decodeSeconds: Double
    }

    public enum Failure: Error, CustomStringConvertible {
        case emptyPrompt
        case promptFillsContext(tokens: Int, positions: Int)

        public var description: String {
            switch self {
            case .emptyPrompt: return "the prompt has no tokens (give some text, or a model whose tokenizer adds a BOS token)"
            case let .promptFillsContext(tokens, positions): return "the prompt (\(tokens) tokens) fills the model's \(positions) positions"
            }
        }
    }

    /// Up to `maxTokens` tokens after `prompt`, ending early at a token of `stops` or when the
    /// model's positions are full. `onToken` sees the tokens so far after each new one.
    public static func generate(_ model: some CausalLM, prompt: [Int], maxTokens: Int, sampler: inout Sampler,
                                stops: Set<Int> = [], onToken: ([Int]) -> Void = { _ in }) throws -> Result {
        guard !prompt.isEmpty else { throw Failure.emptyPrompt }
        let capacity = min(model.maxPositions, prompt.count + maxTokens)
        guard prompt.count < capacity || maxTokens == 0 else {
            throw Failure.promptFillsContext(tokens: prompt.count, positions: model.maxPositions)
        }
        let cache = model.makeCache(batch: 1, capacity: max(capacity, prompt.count))
        return try generate(model, prompt: prompt, cache: cache, maxTokens: maxTokens, sampler: &sampler, stops: stops, onToken: onToken)
    }

    /// `generate` continuing `cache`, which holds the positions before `prompt` (a prefix shared
    /// with an earlier call), while the cache has room. `shouldStop` sees the tokens so far after
    /// each new one and ends the generation when it says so.
    public static func generate(_ model: some CausalLM, prompt: [Int], cache: KVCache, maxTokens: Int, sampler: inout Sampler,
                                stops: Set<Int> = [], shouldStop: ([Int]) -> Bool = { _ in false },
                                onToken: ([Int]) -> Void = { _ in }) throws -> Result {
        guard !prompt.isEmpty else { throw Failure.emptyPrompt }
        let capacity = cache.capacity
        guard cache.length + prompt.count <= capacity else {
            throw Failure.promptFillsContext(tokens: cache.length + prompt.count, positions: capacity)
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        var hidden = model.hiddenStates([prompt], cache: cache)
        let t1 = DispatchTime.now().uptimeNanoseconds
        var generated: [Int] = []
        while generated.count < maxTokens && cache.length < capacity {
            let last = model.logits(hidden.rows((hidden.shape[0] - 1)..<hidden.shape[0]).copy())
            let next = sampler.next(UnsafeBufferPointer(last.buffer))
            if stops.contains(next) { break }
            generated.append(next)
            onToken(generated)
            if generated.count == maxTokens || cache.length >= capacity || shouldStop(generated) { break }
            hidden = model.hiddenStates([[next]], cache: cache)
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        return Result(tokens: generated, promptSeconds: Double(t1 - t0) * 1e-9, decodeSeconds: Double(t2 - t1) * 1e-9)
    }

    /// The tokens that end a reply: the model's EOS ids and, with a chat template, the ids of the
    /// template's end-of-turn tokens.
    public static func stopTokens(model: some CausalLM, tokenizer: any Tokenizer, chat: ChatTemplate?) -> Set<Int> {
        var stops = Set(model.eosTokenIDs)
        for t in chat?.stopTokens ?? [] { if let id = tokenizer.id(of: t) { stops.insert(id) } }
        return stops
    }
}
