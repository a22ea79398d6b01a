import LQFormats
import LQQuant
import LQTensor

/// AdamW with bitsandbytes' 8-bit blockwise states (its AdamW8bit on the CPU): the first moment on
/// the signed dynamic map, the second on the unsigned one, in blocks of `DynamicQuantizer.blockSize`.
/// Tensors under `min8BitSize` values keep fp32 states and take `AdamW`'s update.
public final class AdamW8bit: Optimizer {
    /// bitsandbytes' min_8bit_size.
    public static let defaultMin8BitSize = 4096

    /// One tensor's moments: fp32, or 8-bit codes with per-block absmax.
    enum Moments {
        case full(m: [Float], v: [Float])
        case quantized(m: [UInt8], mAbsmax: [Float], v: [UInt8], vAbsmax: [Float])
    }

    public let settings: AdamW.Settings
    public let min8BitSize: Int
    public private(set) var step = 0
    var moments: [Moments]

    public convenience init(parameters: AdapterParameters, settings: AdamW.Settings, min8BitSize: Int = AdamW8bit.defaultMin8BitSize) {
        self.init(counts: parameters.values.map(\.count), settings: settings, min8BitSize: min8BitSize)
    }

    /// States for tensors of these sizes.
    public init(counts: [Int], settings: AdamW.Settings, min8BitSize: Int = AdamW8bit.defaultMin8BitSize) {
        self.settings = settings
        self.min8BitSize = min8BitSize
        moments = counts.map { n in
            guard n >= min8BitSize else { return .full(m: [Float](repeating: 0, count: n), v: [Float](repeating: 0, count: n)) }
            let blocks = (n + DynamicQuantizer.blockSize - 1) / DynamicQuantizer.blockSize
            return .quantized(m: [UInt8](repeating: Self.zeroCode(DynamicQuantizer.signed), count: n), mAbsmax: [Float](repeating: 0, count: blocks),
                              v: [UInt8](repeating: Self.zeroCode(DynamicQuantizer.unsigned), count: n), vAbsmax: [Float](repeating: 0, count: blocks))
        }
    }

    static func zeroCode(_ q: DynamicQuantizer) -> UInt8 { UInt8(q.code.firstIndex(of: 0)!) }

    public func update(values: [Tensor], grads: [Tensor], learningRate lr: Double) {
        step += 1
        let k = AdamStep(settings, step: step, learningRate: lr)
        for index in values.indices {
            let p = values[index].pointer, g = grads[index].pointer, n = values[index].count
            switch moments[index] {
            case var .full(m, v):
                k.apply(p: p, g: g, m: &m, v: &v, n: n)
                moments[index] = .full(m: m, v: v)
            case var .quantized(mc, ma, vc, va):
                // bitsandbytes' CPU kernel: dequantize both states, the Adam step in fp32, requantize.
                var m = [Float](repeating: 0, count: n), v = m
                DynamicQuantizer.signed.dequantize(mc, count: n, absmax: ma, into: &m)
                DynamicQuantizer.unsigned.dequantize(vc, count: n, absmax: va, into: &v)
                for i in 0..<n {
                    m[i] = m[i] * k.b1 + g[i] * (1 - k.b1)
                    v[i] = v[i] * k.b2 + g[i] * g[i] * (1 - k.b2)
                    p[i] *= k.decay
                    p[i] += -k.stepSize * (m[i] / (v[i].squareRoot() / k.c2 + k.eps))
                }
                DynamicQuantizer.signed.quantize(m, count: n, codes: &mc, absmax: &ma)
                DynamicQuantizer.unsigned.quantize(v, count: n, codes: &vc, absmax: &va)
                moments[index] = .quantized(m: mc, mAbsmax: ma, v: vc, vAbsmax: va)
            }
        }
    }

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

    public func load(_ file: SafeTensorsFile, names: [String], step: Int) throws {
        let reader = StateReader(file: file)
        for (index, name) in names.enumerated() {
            switch moments[index] {
            case let .full(m, _):
                moments[index] = .full(m: try reader.floats(name + ".exp_avg", m.count), v: try reader.floats(name + ".exp_avg_sq", m.count))
            case let .quantized(mc, ma, _, _):
                moments[index] = .quantized(m: try reader.bytes(name + ".state1", mc.count), mAbsmax: try reader.floats(name + ".absmax1", ma.count),
                                            v: try reader.bytes(name + ".state2", mc.count), vAbsmax: try reader.floats(name + ".absmax2", ma.count))
            }
        }
        self.step = step
    }

    public var stateBytes: Int {
        moments.reduce(0) { total, m in
            switch m {
            case let .full(m, v): return total + 4 * (m.count + v.count)
            case let .quantized(mc, ma, vc, va): return total + mc.count + vc.count + 4 * (ma.count + va.count)
            }
        }
    }
}
