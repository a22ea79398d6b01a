import LQTensor

/// What evaluation (perplexity, zero-shot tasks), generation and the faithfulness probes need of a
/// decoder-only language model, and all they see of it: hidden states through a KV cache, logits,
/// per-position log-likelihoods and a few facts from its configuration. LlamaModel (Llama, Mistral,
/// Qwen2) is one; another decoder family conforms with its own config and block, and every
/// command that scores or generates runs it unchanged (docs/ARCHITECTURE.md).
public protocol CausalLM: AnyObject {
    var vocabularySize: Int { get }
    /// The positions it was trained for (max_position_embeddings).
    var maxPositions: Int { get }
    var hiddenSize: Int { get }
    /// The ids that end a reply (config.json's eos_token_id).
    var eosTokenIDs: [Int] { get }
    /// The model directories its weights came from (where a non-finite result is traced to).
    var sources: [String] { get }
    /// Whether a cache this model filled can be forked (or gathered) and continued from different
    /// positions, to score several continuations of a context (a cache held on a GPU cannot).
    var forksCaches: Bool { get }

    /// An empty cache for `batch` sequences of up to `capacity` positions.
    func makeCache(batch: Int, capacity: Int) -> KVCache
    /// The final normalised hidden states [batch·length, hidden] of `tokens` (equal-length
    /// sequences), continuing after `cache.length` positions and appending to the cache when given.
    func hiddenStates(_ tokens: [[Int]], cache: KVCache?) -> Tensor
    /// The hidden states of sequences of any lengths, packed one after another [Σ lengths, hidden],
    /// sequence b continuing after the first starts[b] positions of `cache` (what it held past them
    /// is overwritten, never read): the contexts of several items, then each choice continuing its
    /// own context, without padding. Only where forksCaches.
    func hiddenStates(_ tokens: [[Int]], cache: KVCache, continuingAfter starts: [Int]) -> Tensor
    /// Hidden states [n, hidden] → logits [n, vocab].
    func logits(_ hidden: Tensor) -> Tensor
    /// −log p(target) for `rows` of `hidden`, never holding all their logits at once.
    func negativeLogLikelihoods(_ hidden: Tensor, rows: Range<Int>, targets: [Int]) -> [Double]
}

/// Rows whose logits exist at once where only a few numbers per row are kept (log-likelihoods):
/// 24 MiB for a 49,152-token vocabulary.
let logitsRowsPerChunk = 128

extension CausalLM {
    /// Logits [batch·length, vocab] for `tokens`, continuing `cache` when given.
    public func forward(_ tokens: [[Int]], cache: KVCache? = nil) -> Tensor { logits(hiddenStates(tokens, cache: cache)) }
}

extension LlamaModel: CausalLM {
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositions }
    public var hiddenSize: Int { config.hiddenSize }
    public var eosTokenIDs: [Int] { config.eosTokenIDs }
    public var forksCaches: Bool { deviceForward == nil }
    public func makeCache(batch: Int, capacity: Int) -> KVCache { KVCache(config: config, batch: batch, capacity: capacity) }
    public func hiddenStates(_ tokens: [[Int]], cache: KVCache? = nil) -> Tensor { hiddenStates(tokens, cache: cache, observer: nil) }
    public func hiddenStates(_ tokens: [[Int]], cache: KVCache, continuingAfter starts: [Int]) -> Tensor {
        precondition(forksCaches && starts.count == tokens.count && starts.allSatisfy { $0 <= cache.length },
                     "each sequence continues a host cache within the positions it holds")
        return hostHiddenStates(tokens, cache: cache, starts: starts)
    }
}
