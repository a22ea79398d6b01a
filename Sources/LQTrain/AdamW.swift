import LQFormats
import LQTensor

/// AdamW with decoupled weight decay, as torch.optim.AdamW computes it in fp32.
public final class AdamW: Optimizer {
    /// The hyperparameters, with torch.optim.AdamW's defaults (shared by `AdamW8bit`).
    public struct Settings: Sendable, Equatable {
        public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weightDecay = 0.0
        public init() {}
        public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.0) {
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
        }
    }

    public let settings: Settings
    public private(set) var step = 0
    /// First and second moments, one array per parameter tensor.
    var m: [[Float]], v: [[Float]]

    public convenience init(parameters: AdapterParameters, settings: Settings) {
        self.init(counts: parameters.values.map(\.count), settings: settings)
    }

    /// Moments for tensors of these sizes.
    public init(counts: [Int], settings: Settings) {
        self.settings = settings
        m = counts.map { [Float](repeating: 0, count: $0) }
        v = m
    }

    public func update(values: [Tensor], grads: [Tensor], learningRate lr: Double) {
        step += 1
        let k = AdamStep(settings, step: step, learningRate: lr)
        for index in values.indices {
            precondition(values[index].count == m[index].count, "AdamW was made for other tensors")
            let p = values[index].pointer, g = grads[index].pointer
            m[index].withUnsafeMutableBufferPointer { m in
                v[index].withUnsafeMutableBufferPointer { v in
                    k.apply(p: p, g: g, m: m.baseAddress!, v: v.baseAddress!, n: m.count)
                }
            }
        }
    }

    public func stateTensors(names: [String]) -> [PendingTensor] {
        zip(names, zip(m, v)).flatMap { name, moments in
            [PendingTensor(name: name + ".exp_avg", tensor: Tensor(shape: [moments.0.count], values: moments.0)),
             PendingTensor(name: name + ".exp_avg_sq", tensor: Tensor(shape: [moments.1.count], values: moments.1))]
        }
    }

    public func load(_ file: SafeTensorsFile, names: [String], step: Int) throws {
        let reader = StateReader(file: file)
        for (index, name) in names.enumerated() {
            let n = m[index].count
            m[index] = try reader.floats(name + ".exp_avg", n)
            v[index] = try reader.floats(name + ".exp_avg_sq", n)
        }
        self.step = step
    }

    public var stateBytes: Int { m.reduce(0) { $0 + 8 * $1.count } }
}
