import Foundation

/// Learning-rate schedules as transformers' get_*_schedule_with_warmup compute them, by the
/// 0-based index of the optimizer step: a linear ramp from 0 over `warmup` steps, then constant,
/// linear decay to 0 at `total`, or a half cosine to 0 at `total`.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, linear, cosine }

    public var kind: Kind
    public var peak: Double
    public var warmup: Int
    public var total: Int

    public init(kind: Kind, peak: Double, warmup: Int, total: Int) {
        self.kind = kind
        self.peak = peak
        self.warmup = warmup
        self.total = total
    }

    public func rate(at step: Int) -> Double {
        if step < warmup { return peak * Double(step) / Double(max(1, warmup)) }
        let progress = Double(step - warmup) / Double(max(1, total - warmup))
        switch kind {
        case .constant: return peak
        case .linear: return peak * max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine: return peak * max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}

/// Scales all gradients so their global norm is at most `maxNorm`, as torch.nn.utils.clip_grad_norm_
/// does (coefficient maxNorm / (norm + 1e-6), clamped to 1). Returns the norm before clipping
/// (`norm`, when the caller has it already).
@discardableResult
public func clipGradientNorm(_ parameters: AdapterParameters, maxNorm: Double, norm known: Double? = nil) -> Double {
    let norm = known ?? parameters.gradientNorm()
    let coefficient = Float(min(1, maxNorm / (norm + 1e-6)))
    if coefficient < 1 {
        for g in parameters.grads { for i in 0..<g.count { g.pointer[i] *= coefficient } }
    }
    return norm
}
