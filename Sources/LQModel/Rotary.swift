import Foundation
import LQTensor

/// cos/sin tables of rotate-half RoPE, computed as transformers does in float32:
/// inv_freq_i = 1 / θ^(2i/d) (then linear or llama3 scaling), angle = position · inv_freq_i.
final class RotaryTable: @unchecked Sendable {
    let half: Int
    let invFreq: [Float]
    private(set) var cos: [Float] = []
    private(set) var sin: [Float] = []
    private(set) var positions = 0
    private let lock = NSLock()

    init(config: LlamaConfig) {
        let d = config.headDim
        half = d / 2
        var inv = (0..<half).map { i in 1 / powf(config.ropeTheta, Float(2 * i) / Float(d)) }
        switch config.ropeScaling {
        case nil: break
        case let .linear(factor)?: inv = inv.map { $0 / factor }
        case let .llama3(factor, low, high, original)?:
            let lowWavelen = original / low, highWavelen = original / high
            inv = inv.map { f in
                let wavelen = 2 * Float.pi / f
                let scaled = wavelen > lowWavelen ? f / factor : f
                let smooth = (original / wavelen - low) / (high - low)
                let smoothed = (1 - smooth) * scaled / factor + smooth * scaled
                let medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen)
                return medium ? smoothed : scaled
            }
        }
        invFreq = inv
    }

    /// Grows the tables to cover `count` positions.
    func ensure(positions count: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard count > positions else { return }
        let newCount = max(count, positions * 2, 64)
        var c = [Float](repeating: 0, count: newCount * half), s = c
        for p in 0..<newCount {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                c[p * half + i] = Foundation.cos(angle)
                s[p * half + i] = Foundation.sin(angle)
            }
        }
        cos = c
        sin = s
        positions = newCount
    }

    /// Rotates every head of x [batch·length, heads·headDim] in place; row t of sequence b is position start + t.
    /// `inverse` rotates the other way: the rotation's transpose, which is its backward pass.
    func apply(_ x: Tensor, heads: Int, headDim: Int, batch: Int, length: Int, start: Int, inverse: Bool = false) {
        apply(x, heads: heads, headDim: headDim, layout: .uniform(batch: batch, length: length, start: start), inverse: inverse)
    }

    /// As above for sequences laid out by `layout`: row t of sequence b is position starts[b] + t.
    func apply(_ x: Tensor, heads: Int, headDim: Int, layout: PassLayout, inverse: Bool = false) {
        let sign: Float = inverse ? -1 : 1
        let width = heads * headDim
        cos.withUnsafeBufferPointer { cp in
            sin.withUnsafeBufferPointer { sp in
                for b in 0..<layout.batch {
                    for t in 0..<layout.lengths[b] {
                        let row = x.pointer + (layout.offsets[b] + t) * width, position = layout.starts[b] + t
                        let c = cp.baseAddress! + position * half, s = sp.baseAddress! + position * half
                        for h in 0..<heads {
                            let v = row + h * headDim
                            for i in 0..<half {
                                let x1 = v[i], x2 = v[i + half], si = sign * s[i]
                                v[i] = x1 * c[i] + (-x2) * si
                                v[i + half] = x2 * c[i] + x1 * si
                            }
                        }
                    }
                }
            }
        }
    }
}
