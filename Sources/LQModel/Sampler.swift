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
        let m = logits.max()!
        var probs = logits.map { Double(expf(($0 - m) / temperature)) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        var order = Array(probs.indices)
        order.sort { probs[$0] > probs[$1] }
        var kept = 0, mass = 0.0
        for i in order {
            mass += probs[i]
            kept += 1
            if mass >= Double(topP) { break }
        }
        let u = Double(rng.next() >> 11) * 0x1p-53 * mass
        var acc = 0.0
        for i in order.prefix(kept) {
            acc += probs[i]
            if u < acc { return i }
        }
        return order[kept - 1]
    }
}
