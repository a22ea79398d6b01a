import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// AdamW with decoupled weight decay, as torch.optim.AdamW computes it in fp32; or with
/// bitsandbytes' 8-bit blockwise states (AdamW8bit: first moment on the signed dynamic map, second
/// on the unsigned one, blocks of 256; tensors under `min8BitSize` values keep fp32 states).
public final class AdamW {
    public struct Settings: Sendable, Equatable {
        public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weightDecay = 0.0
        public var eightBit = false
        public var min8BitSize = 4096
        public init() {}
    }

    /// One tensor's moments: fp32, or 8-bit codes with per-block absmax.
    enum Moments {
        case full(m: [Float], v: [Float])
        case quantized(m: [UInt8], mAbsmax: [Float], v: [UInt8], vAbsmax: [Float])
    }

    public let settings: Settings
    public private(set) var step = 0
    var moments: [Moments]

    public init(parameters: AdapterParameters, settings: Settings) {
        self.settings = settings
        moments = parameters.values.map { p in
            let n = p.count
            if settings.eightBit && n >= settings.min8BitSize {
                let blocks = (n + DynamicQuantizer.blockSize - 1) / DynamicQuantizer.blockSize
                return .quantized(m: [UInt8](repeating: Self.zeroCode(DynamicQuantizer.signed), count: n), mAbsmax: [Float](repeating: 0, count: blocks),
                                  v: [UInt8](repeating: Self.zeroCode(DynamicQuantizer.unsigned), count: n), vAbsmax: [Float](repeating: 0, count: blocks))
            }
            return .full(m: [Float](repeating: 0, count: n), v: [Float](repeating: 0, count: n))
        }
    }

    static func zeroCode(_ q: DynamicQuantizer) -> UInt8 { UInt8(q.code.firstIndex(of: 0)!) }

    /// One update of every parameter from its gradient at learning rate `lr`.
    public func update(_ parameters: AdapterParameters, learningRate lr: Double) {
        step += 1
        let s = settings
        let correction1 = 1 - pow(s.beta1, Double(step)), correction2 = (1 - pow(s.beta2, Double(step))).squareRoot()
        let b1 = Float(s.beta1), b2 = Float(s.beta2), eps = Float(s.epsilon)
        let decay = Float(1 - lr * s.weightDecay), stepSize = Float(lr / correction1), c2 = Float(correction2)
        for index in parameters.values.indices {
            let p = parameters.values[index].pointer, g = parameters.grads[index].pointer, n = parameters.values[index].count
            switch moments[index] {
            case var .full(m, v):
                // torch: p ← p·(1 − lr·wd); m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²;
                // p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε).
                for i in 0..<n {
                    p[i] *= decay
                    m[i] += (g[i] - m[i]) * (1 - b1)
                    v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i]
                    p[i] -= stepSize * (m[i] / (v[i].squareRoot() / c2 + eps))
                }
                moments[index] = .full(m: m, v: v)
            case var .quantized(mc, ma, vc, va):
                // bitsandbytes' CPU kernel: dequantize both states, the Adam step in fp32, requantize.
                var m = [Float](repeating: 0, count: n), v = m
                DynamicQuantizer.signed.dequantize(mc, count: n, absmax: ma, into: &m)
                DynamicQuantizer.unsigned.dequantize(vc, count: n, absmax: va, into: &v)
                for i in 0..<n {
                    m[i] = m[i] * b1 + g[i] * (1 - b1)
                    v[i] = v[i] * b2 + g[i] * g[i] * (1 - b2)
                    p[i] *= decay
                    p[i] += -stepSize * (m[i] / (v[i].squareRoot() / c2 + eps))
                }
                DynamicQuantizer.signed.quantize(m, count: n, codes: &mc, absmax: &ma)
                DynamicQuantizer.unsigned.quantize(v, count: n, codes: &vc, absmax: &va)
                moments[index] = .quantized(m: mc, mAbsmax: ma, v: vc, vAbsmax: va)
            }
        }
    }

    /// The state as safetensors entries (for checkpoints), under the parameters' names.
    public func stateTensors(names: [String]) -> [PendingTensor] {
        var out: [PendingTensor] = []
        for (name, m) in zip(names, moments) {
            switch m {
            case let .full(m, v):
                out.append(PendingTensor(name: name + ".exp_avg", tensor: Tensor(shape: [m.count], values: m)))
                out.append(PendingTensor(name: name + ".exp_avg_sq", tensor: Tensor(shape: [v.count], values: v)))
            case let .quantized(mc, ma, vc, va):
                out.append(PendingTensor(name: name + ".state1", dtype: .u8, shape: [mc.count], bytes: mc))
                out.append(PendingTensor(name: name + ".absmax1", tensor: Tensor(shape: [ma.count], values: ma)))
                out.append(PendingTensor(name: name + ".state2", dtype: .u8, shape: [vc.count], bytes: vc))
                out.append(PendingTensor(name: name + ".absmax2", tensor: Tensor(shape: [va.count], values: va)))
            }
        }
        return out
    }

    /// Restores the state written by `stateTensors` (and the step count).
    public func load(_ file: SafeTensorsFile, names: [String], step: Int) throws {
        func floats(_ key: String, _ count: Int) throws -> [Float] {
            guard file.contains(key) else { throw ModelError.missingWeight(path: file.path, tensor: key) }
            let t = try file.floatTensor(key)
            guard t.count == count else { throw ModelError.badShape(path: file.path, tensor: key, expected: [count], actual: t.shape) }
            return t.array
        }
        func bytes(_ key: String, _ count: Int) throws -> [UInt8] {
            guard file.contains(key) else { throw ModelError.missingWeight(path: file.path, tensor: key) }
            let raw = file.bytes(of: try file.entry(key))
            guard raw.count == count else { throw ModelError.badShape(path: file.path, tensor: key, expected: [count], actual: [raw.count]) }
            return Array(raw)
        }
        for (index, name) in names.enumerated() {
            switch moments[index] {
            case let .full(m, _):
                moments[index] = .full(m: try floats(name + ".exp_avg", m.count), v: try floats(name + ".exp_avg_sq", m.count))
            case let .quantized(mc, ma, _, _):
                moments[index] = .quantized(m: try bytes(name + ".state1", mc.count), mAbsmax: try floats(name + ".absmax1", ma.count),
                                            v: try bytes(name + ".state2", mc.count), vAbsmax: try floats(name + ".absmax2", ma.count))
            }
        }
        self.step = step
    }

    /// Bytes of optimizer state.
    public var stateBytes: Int {
        moments.reduce(0) { total, m in
            switch m {
            case let .full(m, v): return total + 4 * (m.count + v.count)
            case let .quantized(mc, ma, vc, va): return total + mc.count + vc.count + 4 * (ma.count + va.count)
            }
        }
    }
}
