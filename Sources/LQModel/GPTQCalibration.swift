import Foundation
import LQQuant
import LQTensor

/// GPTQ over a whole model, layer-sequentially as AutoGPTQ runs it: the calibration sequences'
/// hidden states enter block 0; in each block the projections are quantized in true-sequential
/// groups ([k, v, q], [o], [up, gate], [down]), each group's Hessians taken from inputs that have
/// already passed through the groups quantized before it; the quantized block's outputs feed the
/// next block. Memory: one block's activations for the calibration set at a time (plus one
/// Hessian per distinct projection input).
public enum GPTQCalibration {
    /// The true-sequential groups in order; members of a group share their input.
    public static let sequentialGroups: [[Projection]] = [[.k, .v, .q], [.o], [.up, .gate], [.down]]

    public struct Quantized: Sendable {
        public let site: LinearSite
        public let quantization: UniformQuantization
        public let loss: Double
        public let damp: Float
        public let relativeError: Double
    }

    public enum Event: Sendable {
        case block(index: Int, of: Int)
        case matrix(LinearSite, Quantized)
    }

    /// Quantizes every projection of `model` in place (each becomes a UniformLinear with fp16
    /// scales, exactly what a GPTQ checkpoint stores) and returns what each got. While calibrating,
    /// later blocks see the earlier ones with fp32 scales, as AutoGPTQ's in-place weights are.
    /// Without `trueSequential` (AutoGPTQ's true_sequential false) each block's seven projections
    /// are quantized together from Hessians of one pass through the unquantized block.
    public static func quantize(_ model: LlamaModel, samples: [[Int]], options: GPTQ.Options, trueSequential: Bool = true,
                                progress: (Event) -> Void = { _ in }) throws -> [Quantized] {
        precondition(!samples.isEmpty, "GPTQ needs calibration samples")
        var states = samples.map { model.embedRows([$0]) }
        var out: [Quantized] = []
        let passes = trueSequential ? sequentialGroups.map { [$0] } : [sequentialGroups]
        for l in model.layers.indices {
            progress(.block(index: l, of: model.layers.count))
            let layer = model.layers[l]
            for pass in passes {
                // The members of an input-sharing group share one Hessian; the first the block computes is watched.
                let watched = pass.map { group in Projection.allCases.first(where: group.contains)! }
                let hessian = HessianObserver(layer: l, projections: watched, columns: watched.map { layer[$0].inFeatures })
                for (x, tokens) in zip(states, samples) {
                    let kernels = HostBlockKernels(model: model, layer: l, layout: .uniform(batch: 1, length: tokens.count), observer: hessian)
                    kernels.stopAfterObserving = watched.last  // the rest of the block is not needed for this pass
                    _ = llamaBlock(kernels, x.copy())  // inference runs the residuals in place
                }
                for (group, input) in zip(pass, watched) {
                    for p in group {
                        let site = LinearSite.projection(layer: l, p)
                        let original = layer[p]
                        let w = original.denseWeight()
                        let result = try GPTQ.quantize(w, hessian: hessian.h[input]!, options: options, name: site.weightName)
                        layer[p] = UniformLinear(weight: result.quantization, bias: original.bias)
                        let q = result.quantization.withHalfScales()
                        let done = Quantized(site: site, quantization: q, loss: result.loss, damp: result.damp,
                                             relativeError: q.relativeError(to: w))
                        out.append(done)
                        progress(.matrix(site, done))
                    }
                }
            }
            states = zip(states, samples).map { x, tokens in
                llamaBlock(HostBlockKernels(model: model, layer: l, layout: .uniform(batch: 1, length: tokens.count)), x)
            }
        }
        for q in out {  // the model as its checkpoint will store it
            guard case let .projection(l, p) = q.site else { continue }
            model.layers[l][p] = UniformLinear(weight: q.quantization, bias: model.layers[l][p].bias)
        }
        return out
    }

    /// Round to nearest at the same settings (no calibration): every projection in place.
    public static func roundToNearest(_ model: LlamaModel, options: GPTQ.Options, progress: (Event) -> Void = { _ in }) throws -> [Quantized] {
        var out: [Quantized] = []
        let quantizer = UniformQuantizer(bits: options.bits, symmetric: options.symmetric)
        for (l, layer) in model.layers.enumerated() {
            progress(.block(index: l, of: model.layers.count))
            for p in Projection.allCases {
                let site = LinearSite.projection(layer: l, p), original = layer[p]
                let w = original.denseWeight()
                try GPTQ.requireFinite(w, name: site.weightName)
                let q = UniformQuantization.roundToNearest(w.pointer, rows: w.shape[0], cols: w.shape[1], quantizer: quantizer,
                                                            groupSize: options.groupSize).withHalfScales()
                layer[p] = UniformLinear(weight: q, bias: original.bias)
                let done = Quantized(site: site, quantization: q, loss: .nan, damp: 0, relativeError: q.relativeError(to: w))
                out.append(done)
                progress(.matrix(site, done))
            }
        }
        return out
    }
}

/// H = 2/N · Σ x·xᵀ over every token's input to each watched projection, N counting sequences,
/// with AutoGPTQ's running rescale (H *= N/(N+n) before adding a batch of n sequences).
final class HessianObserver: ForwardObserver {
    let layer: Int
    private(set) var h: [Projection: Tensor] = [:]
    private var sequences: [Projection: Int] = [:]

    init(layer: Int, projections: [Projection], columns: [Int]) {
        self.layer = layer
        for (p, n) in zip(projections, columns) { h[p] = Tensor(zeros: [n, n]); sequences[p] = 0 }
    }

    func observeInput(_ x: Tensor, of site: LinearSite) {
        guard case let .projection(l, p) = site, l == layer, let h = h[p], let seen = sequences[p] else { return }
        let n = 1  // one sequence per forward pass
        let total = seen + n
        let keep = Float(seen) / Float(total)
        for i in 0..<h.count { h.pointer[i] *= keep }
        sequences[p] = total
        gemm(x.matrix, transposeA: true, x.matrix, into: h.matrix, alpha: 2 / Float(total), beta: 1)
    }
}
