import Foundation
import LQFormats
import LQModel
import LQTensor

/// What the trainer asks of an optimizer: one update per step from the accumulated gradients, and
/// its state as checkpoint tensors, so that a resumed run continues bit for bit.
public protocol Optimizer: AnyObject {
    /// Updates taken so far (Adam's t).
    var step: Int { get }
    /// Bytes of optimizer state.
    var stateBytes: Int { get }
    /// One update of every tensor from its gradient at learning rate `learningRate` (the tensors
    /// the optimizer was made for, in order).
    func update(values: [Tensor], grads: [Tensor], learningRate: Double)
    /// The state as safetensors entries, under the parameters' names.
    func stateTensors(names: [String]) -> [PendingTensor]
    /// Restores the state written by `stateTensors`, and the step count.
    func load(_ file: SafeTensorsFile, names: [String], step: Int) throws
}

extension Optimizer {
    /// One update of every parameter from its gradient.
    public func update(_ parameters: AdapterParameters, learningRate: Double) {
        update(values: parameters.values, grads: parameters.grads, learningRate: learningRate)
    }
}

/// `train.optimizer`.
public enum OptimizerKind: String, CaseIterable, Sendable {
    case adamw, adamw8bit
}

extension TrainConfig {
    /// The configured optimizer, with its hyperparameters, over `parameters`.
    public func makeOptimizer(for parameters: AdapterParameters) -> any Optimizer {
        makeOptimizer(counts: parameters.values.map(\.count), settings: adam)
    }

    /// The configured optimizer over tensors of these sizes, with `settings` for its hyperparameters.
    func makeOptimizer(counts: [Int], settings: AdamW.Settings) -> any Optimizer {
        switch optimizer {
        case .adamw: return AdamW(counts: counts, settings: settings)
        case .adamw8bit: return AdamW8bit(counts: counts, settings: settings, min8BitSize: min8BitSize)
        }
    }
}

/// The fp32 scalars of Adam's step t at learning rate lr, rounded as torch rounds them.
struct AdamStep {
    let b1: Float, b2: Float, eps: Float, decay: Float, stepSize: Float, c2: Float

    init(_ s: AdamW.Settings, step: Int, learningRate lr: Double) {
        let correction1 = 1 - pow(s.beta1, Double(step)), correction2 = (1 - pow(s.beta2, Double(step))).squareRoot()
        b1 = Float(s.beta1)
        b2 = Float(s.beta2)
        eps = Float(s.epsilon)
        decay = Float(1 - lr * s.weightDecay)
        stepSize = Float(lr / correction1)
        c2 = Float(correction2)
    }

    /// torch.optim.AdamW's single-tensor update of `n` values with fp32 moments:
    /// p ← p·(1 − lr·wd); m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²;
    /// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε).
    func apply(p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n {
            p[i] *= decay
            m[i] += (g[i] - m[i]) * (1 - b1)
            v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i]
            p[i] -= stepSize * (m[i] / (v[i].squareRoot() / c2 + eps))
        }
    }
}

/// Checkpoint tensors as the optimizers read them back, checked against the counts they expect.
struct StateReader {
    let file: SafeTensorsFile

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
}
