import Foundation
import LQTensor
import LQTrain
import Testing

/// Non-default betas, epsilon and weight decay change the update as torch.optim.AdamW's formula says.
struct AdamHyperparameterTests {
    static let start: [Double] = [0.5, -0.25, 0.125, 1.0, -2.0, 0.0, 0.75, -0.5]
    /// Gradients of the order of ε = 1e-3, so that ε visibly shrinks each step.
    static let grads: [[Double]] = [[0.002, -0.001, 0.0005, 0.003, -0.004, 0.001, 0, -0.002],
                                    [0.001, 0.001, -0.002, 0.002, -0.001, 0.003, 0.0005, 0.001],
                                    [-0.003, 0.002, 0.001, -0.001, 0.002, -0.002, 0.001, 0.0005]]
    static let lr = 0.01

    /// The closed form in fp64, written out from torch's documentation of AdamW:
    /// θ ← θ − γλθ; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    /// θ ← θ − γ · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + ε).
    static func expected(beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double, steps: Int) -> [Double] {
        var p = start, m = [Double](repeating: 0, count: start.count), v = m
        for t in 1...steps {
            for i in p.indices {
                let g = grads[t - 1][i]
                p[i] -= lr * weightDecay * p[i]
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                let mHat = m[i] / (1 - pow(beta1, Double(t))), vHat = v[i] / (1 - pow(beta2, Double(t)))
                p[i] -= lr * mHat / (vHat.squareRoot() + epsilon)
            }
        }
        return p
    }

    static func run(_ optimizer: (AdapterParameters) -> any Optimizer, steps: Int) -> [Double] {
        let params = AdapterParameters(names: ["w"], values: [Tensor(shape: [start.count], values: start.map(Float.init))])
        let o = optimizer(params)
        for t in 0..<steps {
            for (i, g) in grads[t].enumerated() { params.grads[0].pointer[i] = Float(g) }
            o.update(params, learningRate: lr)
        }
        #expect(o.step == steps)
        return params.values[0].array.map(Double.init)
    }

    static func expectClose(_ got: [Double], _ want: [Double], _ what: String) {
        for (a, b) in zip(got, want) { #expect(abs(a - b) <= 2e-6 * max(1, abs(b)), "\(what): \(got) vs closed form \(want)") }
    }

    @Test func nonDefaultBetasEpsilonAndDecayFollowTheClosedForm() {
        let settings = AdamW.Settings(beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0.1)
        let want = Self.expected(beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0.1, steps: 3)
        Self.expectClose(Self.run({ AdamW(parameters: $0, settings: settings) }, steps: 3), want, "AdamW")
        // The settings matter at this tolerance: the defaults land far from it.
        let defaults = Self.expected(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0, steps: 3)
        #expect(zip(want, defaults).map { abs($0 - $1) }.max()! > 1e-3)
        // So does each alone (β2 and ε, with the others at torch's defaults).
        let beta2Only = Self.expected(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0, steps: 3)
        let epsilonOnly = Self.expected(beta1: 0.9, beta2: 0.999, epsilon: 1e-3, weightDecay: 0, steps: 3)
        Self.expectClose(Self.run({ AdamW(parameters: $0, settings: AdamW.Settings(beta2: 0.95)) }, steps: 3), beta2Only, "beta2")
        Self.expectClose(Self.run({ AdamW(parameters: $0, settings: AdamW.Settings(epsilon: 1e-3)) }, steps: 3), epsilonOnly, "epsilon")
        #expect(zip(beta2Only, defaults).map { abs($0 - $1) }.max()! > 1e-4)
        #expect(zip(epsilonOnly, defaults).map { abs($0 - $1) }.max()! > 1e-3)
    }

    @Test func eightBitAdamWTakesTheSameHyperparameters() {
        let settings = AdamW.Settings(beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0.1)
        // Below min_8bit_size the states stay fp32: AdamW's update exactly.
        let fp32 = Self.run({ AdamW(parameters: $0, settings: settings) }, steps: 3)
        #expect(Self.run({ AdamW8bit(parameters: $0, settings: settings) }, steps: 3) == fp32)
        // With 8-bit states the first step starts from exact zeros, so it is the closed form too.
        let want = Self.expected(beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0.1, steps: 1)
        Self.expectClose(Self.run({ AdamW8bit(parameters: $0, settings: settings, min8BitSize: 1) }, steps: 1), want, "AdamW8bit")
    }

    @Test func theConfigurationChoosesTheOptimizerAndItsHyperparameters() throws {
        let yaml = "model: m\noutput_dir: o\ndata: {train: t.jsonl}\ntrain: {max_steps: 10}\n"
        let c = try TrainConfig(yaml: yaml, overrides: ["train.optimizer=adamw8bit", "train.adam_beta1=0.8", "train.adam_beta2=0.95",
                                                        "train.adam_epsilon=1e-3", "train.weight_decay=0.1", "train.min_8bit_size=1"])
        let params = AdapterParameters(names: ["w"], values: [Tensor(zeros: [8])])
        let optimizer = try #require(c.makeOptimizer(for: params) as? AdamW8bit)
        #expect(optimizer.settings == AdamW.Settings(beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0.1))
        #expect(optimizer.min8BitSize == 1)
        let plain = try TrainConfig(yaml: yaml)
        let adamw = try #require(plain.makeOptimizer(for: params) as? AdamW)
        #expect(adamw.settings == AdamW.Settings() && plain.optimizer == .adamw && plain.min8BitSize == 4096)
    }
}
