import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

/// L4Q trained on integer zero points (l4q.format gptq, QuantizationAwareLoRA's `integerZeros`):
/// against torch autograd of the same formulas (scripts/make-l4q-fixtures.py, second half: the tiny
/// Llama, its adapter, 3 bits, groups of 32, zero points 1...7), against `quantize --method rtn
/// --asym` at B = 0, and against finite differences where W_q is smooth in s.
struct L4QIntegerZeroTests {
    /// The fixture adapter's LoRA layers as integer-zero L4Q layers over the same bases.
    static func model(bits: Int, group: Int, zeros: ClosedRange<Int>, halfSteps: Bool = true, zeroB: Bool = false) throws -> (LlamaModel, AdapterParameters) {
        let (model, _) = try tinyModelWithAdapter()
        for layer in model.layers {
            for (p, linear) in layer.linears {
                guard let lora = linear as? LoRALinear else { continue }
                let b = zeroB ? Tensor(zeros: lora.b.shape) : lora.b.copy()
                layer[p] = QuantizationAwareLoRA(base: lora.base, a: lora.a.copy(), b: b, scale: lora.scale, bits: bits, groupSize: group,
                                                 integerZeros: zeros, halfSteps: halfSteps)
            }
        }
        return (model, AdapterParameters(model: model, config: try AdapterConfig(directory: trainFixtures + "/tiny/adapter"), dropout: 0))
    }

    static func layers(_ model: LlamaModel) -> [(module: String, layer: QuantizationAwareLoRA)] {
        model.layers.enumerated().flatMap { i, layer in
            layer.linears.compactMap { p, l in (l as? QuantizationAwareLoRA).map { (PEFTKeys.prefix + LinearSite.projection(layer: i, p).module, $0) } }
        }
    }

    /// The RTN initialisation, then at torch's perturbed point (steps scaled by 0.6...1.2, zero
    /// points moved by up to ±2.5, some past 1...7): W_q, the loss and the gradients of A, B, s and z.
    @Test func initialisationForwardLossAndEveryGradientMatchTorch() throws {
        let file = try SafeTensorsFile(path: trainFixtures + "/tiny/l4q-integer.safetensors")
        let bits = Int(try file.floatTensor("bits").array[0]), group = Int(try file.floatTensor("group").array[0])
        let range = try file.floatTensor("zero_range").array.map { Int($0) }
        #expect(range == [1, 7] && bits == 3)
        let (model, params) = try Self.model(bits: bits, group: group, zeros: range[0]...range[1])
        #expect(params.names.filter { $0.hasSuffix(".l4q_zero") }.count == 14 && !params.names.contains { $0.hasSuffix("l4q_offset") })
        var clamped = 0
        for (module, l4q) in Self.layers(model) {
            #expect(l4q.step.array == (try file.floatTensor("init_step." + module)).array, "\(module)")
            #expect(l4q.offset.array == (try file.floatTensor("init_zero." + module)).array, "\(module)")
            let step = try file.floatTensor("step." + module), zero = try file.floatTensor("zero." + module)
            l4q.step.pointer.update(from: step.pointer, count: step.count)
            l4q.offset.pointer.update(from: zero.pointer, count: zero.count)
            clamped += zero.array.filter { !(Float(1)...7).contains($0.rounded(.toNearestOrEven)) }.count
            // The forward: every weight the value torch computed (a code apart where W' = W0 + scale·B·A,
            // summed in another order, lands across a rounding boundary: none does here).
            let reference = try file.floatTensor("weight." + module), mine = l4q.effectiveWeight()
            #expect(maxAbsDifference(mine, reference) <= 1e-6 * (reference.array.map(abs).max() ?? 1), "\(module)")
        }
        #expect(clamped > 0, "the fixture clamps some zero points")
        let (tokens, labels, _) = try fixtureBatch()
        var rng = SeededGenerator(seed: 0)
        let loss = model.accumulateGradients(tokens: tokens, labels: labels, normalizer: targetCount(labels), into: params, rng: &rng)
        let expected = Double(try file.floatTensor("loss").array[0])
        #expect(abs(loss.mean - expected) <= 1e-5 * expected, "loss \(loss.mean) vs torch \(expected)")
        for (name, grad) in zip(params.names, params.grads) {
            let key: String
            if name.hasSuffix("l4q_step") { key = "grad_step." + name.dropLast(".l4q_step".count) }
            else if name.hasSuffix("l4q_zero") { key = "grad_zero." + name.dropLast(".l4q_zero".count) }
            else { key = "grad." + name }
            let reference = try file.floatTensor(key)
            let (worst, scale) = (maxAbsDifference(grad, reference), reference.array.map(abs).max() ?? 0)
            #expect(scale > 0 && worst <= 1e-4 * scale + 1e-7, "\(name): max |Δgrad| \(worst) against max |grad| \(scale)")
        }
        // A clamped zero point gets no gradient, in both.
        for (name, (value, grad)) in zip(params.names, zip(params.values, params.grads)) where name.hasSuffix("l4q_zero") {
            for k in 0..<value.count where !(Float(1)...7).contains(value.pointer[k].rounded(.toNearestOrEven)) {
                #expect(grad.pointer[k] == 0, "\(name)[\(k)]")
            }
        }
    }

    /// At B = 0 the layer is `quantize --method rtn --asym` with the same group size: the same fp32
    /// scales and codes, the same zero points where RTN's is storable (v1: 1...maxq; RTN gives 0 to a
    /// group with no negative weight, which becomes 1), and with 0...maxq storable the same zero
    /// points everywhere, and W_q is RTN's model as written (fp16 scales) bit for bit.
    @Test func atBZeroTheLayerIsRoundToNearest() throws {
        for (bits, group) in [(3, 32), (4, 16), (2, 64)] {
            for zeros in [1...((1 << bits) - 1), 0...((1 << bits) - 1)] {
                let (model, _) = try Self.model(bits: bits, group: group, zeros: zeros, zeroB: true)
                for (module, l4q) in Self.layers(model) {
                    let w0 = l4q.base.denseWeight()
                    let rtn = UniformQuantization.roundToNearest(w0.pointer, rows: w0.shape[0], cols: w0.shape[1],
                                                                 quantizer: UniformQuantizer(bits: bits, symmetric: false), groupSize: group)
                    let mine = l4q.quantization()
                    #expect(mine.scales == rtn.scales && mine.groupIndex == rtn.groupIndex && mine.groupSize == rtn.groupSize, "\(module)")
                    for (z, r) in zip(mine.zeros, rtn.zeros) {
                        #expect(z == min(max(r, Float(zeros.lowerBound)), Float(zeros.upperBound)), "\(module): zero \(z) for RTN's \(r)")
                    }
                    if zeros.lowerBound == 0 || !rtn.zeros.contains(0) {
                        #expect(mine.codes == rtn.codes && mine.zeros == rtn.zeros, "\(module)")
                        #expect(l4q.effectiveWeight().array == rtn.withHalfScales().dequantized().array, "\(module)")
                    }
                    // Whatever the zero points, the layer computes the quantization as written.
                    #expect(l4q.effectiveWeight().array == mine.withHalfScales().dequantized().array, "\(module)")
                    #expect(l4q.denseWeight().array == l4q.effectiveWeight().array, "\(module): weightRow")
                }
            }
        }
    }

    /// Where every weight of a group is clamped (the step made a tenth of the group's smallest |W'|,
    /// so |W'/s| ≥ 10 and round(u) + z̃ is outside 0...maxq, and stays so for a step ±5% away),
    /// W_q = s·(Q − z̃) is linear in s: the loss's derivative along steps changed so matches the
    /// central difference (fp32 steps, halfSteps off, so W_q is smooth in s; gradients are g·∂L/∂s).
    @Test func stepGradientsOfClampedGroupsMatchFiniteDifferences() throws {
        let (model, params) = try Self.model(bits: 3, group: 32, zeros: 1...7, halfSteps: false)
        var moved: [(QuantizationAwareLoRA, Int, Float)] = []
        for (_, l4q) in Self.layers(model) {
            let cols = l4q.inFeatures, g = (cols + 31) / 32
            l4q.quantizing = false
            let adapted = l4q.effectiveWeight()  // W'
            l4q.quantizing = true
            for i in 0..<l4q.outFeatures {
                for k in 0..<g {
                    let smallest = ((k * 32)..<min(cols, (k + 1) * 32)).map { abs(adapted.pointer[i * cols + $0]) }.min()!
                    guard smallest > 0 else { continue }
                    l4q.step.pointer[i * g + k] = smallest / 10
                    moved.append((l4q, i * g + k, smallest / 10))
                }
            }
        }
        #expect(moved.count > 1000)
        let (tokens, labels, _) = try fixtureBatch()
        let n = targetCount(labels)
        func loss() -> Double {
            var rng = SeededGenerator(seed: 0)
            return model.accumulateGradients(tokens: tokens, labels: labels, normalizer: n, into: params, rng: &rng).sum / Double(n)
        }
        params.zeroGradients()
        _ = loss()
        // The direction: 5% of each step, signed as its gradient (so every group adds to the change).
        let gradScale = 1 / (32 * Float(3)).squareRoot()
        var analytic = 0.0
        var direction: [Float] = []
        for (l4q, k, s) in moved {
            let grad = params.gradients(of: l4q)![2].pointer[k]
            let d = (grad < 0 ? -0.05 : 0.05) * s
            direction.append(d)
            analytic += Double(grad / gradScale) * Double(d)
        }
        func shifted(_ t: Float) -> Double {
            for ((l4q, k, s), d) in zip(moved, direction) { l4q.step.pointer[k] = s + t * d }
            return loss()
        }
        let numeric = (shifted(1) - shifted(-1)) / 2
        _ = shifted(0)
        #expect(analytic > 0 && abs(numeric - analytic) <= 1e-2 * analytic, "directional derivative \(analytic), central difference \(numeric)")
    }
}
