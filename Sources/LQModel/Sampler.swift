import Foundation
import LQTensor

/// Next-token choice: greedy at temperature 0, else nucleus (top-p) sampling at a temperature.
public struct Sampler {
    public var temperature: Float
    public var topP: Float
    var rng: SeededGenerator

    public init(temperature: Float, topP: Float, seed: UInt64) {
        self.temperature = temperature
        self.topP = topP
        rng = SeededGenerator(seed: seed)
    }

    public mutating func next(_ logits: UnsafeBufferPointer<Float>) -> Int {
        if temperature <= 0 { return logits.indices.max { logits[$0] < logits[$1] }! }
        let kept = Self.nucleus(logits, temperature: temperature, topP: topP)
        let mass = kept.reduce(0) { $0 + $1.probability }
        let u = Double(rng.next() >> 11) * 0x1p-53 * mass
        var acc = 0.0
        for (token, p) in kept {
            acc += p
            if u < acc { return token }
        }
        return kept[kept.count - 1].token
    }

    /// The tokens top-p sampling draws from, most probable first, with their probabilities under
    /// softmax(logits / temperature): the fewest whose mass reaches `topP`, as transformers'
    /// TopPLogitsWarper keeps them (every token at topP ≥ 1, where the running sum could stop
    /// early by rounding).
    public static func nucleus(_ logits: UnsafeBufferPointer<Float>, temperature: Float, topP: Float) -> [(token: Int, probability: Double)] {
        let m = logits.max()!
        var probs = logits.map { Double(expf(($0 - m) / temperature)) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        var order = Array(probs.indices)
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        if topP >= 1 { return order.map { ($0, probs[$0]) } }
        var kept: [(token: Int, probability: Double)] = []
        var mass = 0.0
        for i in order {
            mass += probs[i]
            kept.append((i, probs[i]))
            if mass >= Double(topP) { break }
        }
        return kept
    }
}
