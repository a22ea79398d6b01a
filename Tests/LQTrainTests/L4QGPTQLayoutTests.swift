import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

/// l4q.format gptq: the model L4Q trained on integer zero points, written with AutoGPTQ's layout;
/// and the rounding of fractional zero points (an lqlora-trained layer stored as gptq), whose oracle
/// is a search over every level and zero point the gptq layout can store.
struct L4QGPTQLayoutTests {
    /// Six steps of L4Q (4 bits, groups of 16) on the Workspace's tiny model, written in `format`.
    static func train(_ ws: Workspace, format: String, into directory: String) throws -> Trainer {
        let settings = try TrainConfig(yaml: ws.yaml("l4q: {bits: 4, group_size: 16, format: \(format)}"),
                                       overrides: ["lora.dropout=0", "train.max_steps=6", "checkpoint.every=0", "output_dir=\(directory)"])
        let trainer = try Trainer(config: settings)
        #expect(try trainer.run() == .finished)
        return trainer
    }

    static func open(_ directory: String) throws -> (Checkpoint, GPTQFormat.Settings, report: [String: Any]) {
        let checkpoint = try Checkpoint(path: directory)
        let settings = try #require(try GPTQFormat.Settings(modelConfig: try checkpoint.config() ?? [:], path: directory))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/quant_report.json"))) as! [String: Any]
        return (checkpoint, settings, report)
    }

    /// l4q.format gptq trains on the integer zero points it writes: the report, per matrix and for
    /// the model, and the trainer's rounding say that storing them moved nothing (exactly 0, no zero
    /// point clamped); the checkpoint's zero points are integers in 1...15 and its scales the trained
    /// steps in fp16; loaded, each projection runs on the uniform kernels with the trained layer's
    /// W_q bit for bit, and the logits are the trained model's. The lqlora run of the same seed
    /// trains another model (LSQ+'s real offsets, saved as l4q_offset, not l4q_zero).
    @Test func theGPTQModelIsTheTrainedModelAndItsReportSaysNothingMoved() throws {
        let ws = try Workspace()
        let plain = try Self.train(ws, format: "lqlora", into: ws.root + "/lq")
        let trainer = try Self.train(ws, format: "gptq", into: ws.root + "/gptq")
        let (lq, lqSettings, lqReport) = try Self.open(ws.root + "/lq/model"), (gq, settings, report) = try Self.open(ws.root + "/gptq/model")
        #expect(lqSettings.layout == .lqlora && settings.layout == .gptq && settings.bits == 4 && settings.groupSize == 16)
        #expect(!settings.symmetric && !settings.descAct && settings.zeroOffset == 1)
        #expect(report["format"] as? String == "gptq-b4-g16-asym" && lqReport["zero_point_rounding"] == nil && plain.zeroPointRounding == nil)
        #expect(trainer.parameters.names.filter { $0.hasSuffix(".l4q_zero") }.count == 14 && !plain.parameters.names.contains { $0.hasSuffix(".l4q_zero") })
        let rows = Dictionary(uniqueKeysWithValues: (report["matrices"] as! [[String: Any]]).map { ($0["name"] as! String, $0) })
        let modules = GPTQFormat.modules(in: gq)
        #expect(modules == GPTQFormat.modules(in: lq) && modules.count == 14 && rows.count == 14)
        let loaded = try LlamaModel(directory: ws.root + "/gptq/model")
        var zeroPoints = 0
        for (i, (mine, theirs)) in zip(trainer.model.layers, loaded.layers).enumerated() {
            for ((p, a), (_, b)) in zip(mine.linears, theirs.linears) {
                let site = LinearSite.projection(layer: i, p), module = String(site.weightName.dropLast(".weight".count))
                let l4q = try #require(a as? QuantizationAwareLoRA)
                #expect(l4q.integerZeros == 1...15 && l4q.quantizing && b is UniformLinear, "\(module)")
                #expect(b.denseWeight().array == l4q.effectiveWeight().array, "\(module): the weight loaded is W_q")
                let q = try GPTQFormat.load(module, from: gq, settings: settings)
                #expect(q.zeros.allSatisfy { $0 == $0.rounded() && (Float(1)...15).contains($0) }, "\(module)")
                let (outs, groups) = (q.rows, q.groupCount)
                #expect((0..<outs).allSatisfy { r in (0..<groups).allSatisfy { k in
                    q.scales[k * outs + r] == Float(Float16(l4q.step.pointer[r * groups + k]))
                } }, "\(module): the scales are the steps in fp16")
                let entry = try #require(rows[site.weightName]?["zero_point_rounding"] as? [String: Any])
                #expect(entry["max_abs_change"] as? Double == 0 && entry["rms_change"] as? Double == 0 && entry["relative_change"] as? Double == 0, "\(module)")
                #expect(entry["zero_points"] as? Int == q.zeros.count && entry["zero_points_clamped"] as? Int == 0, "\(module)")
                zeroPoints += q.zeros.count
            }
        }
        let total = try #require(report["zero_point_rounding"] as? [String: Any])
        #expect(total["max_abs_change"] as? Double == 0 && total["rms_change"] as? Double == 0 && total["relative_change"] as? Double == 0)
        #expect(total["zero_points"] as? Int == zeroPoints && total["zero_points_clamped"] as? Int == 0 && total["zero_point_range"] as? [Int] == [1, 15])
        let rounding = try #require(trainer.zeroPointRounding)
        #expect(rounding.change.maxAbs == 0 && rounding.change.sumOfSquares == 0 && rounding.clampedZeros == 0 && rounding.zeroPoints == zeroPoints)
        // The logits: the same weights, multiplied by the uniform kernels instead of dense GEMM.
        let batch = BatchPlan(examples: trainer.valid!.examples, batchSize: 2, seqLen: 64, packing: false, pad: 2, seed: 0).batches(epoch: 0, shuffle: false)[0]
        let trained = trainer.model.logits(trainer.model.hiddenStates(batch.tokens, observer: nil))
        let written = loaded.logits(loaded.hiddenStates(batch.tokens, observer: nil))
        let (worst, scale) = (maxAbsDifference(trained, written), trained.array.map(abs).max() ?? 0)
        #expect(scale > 0 && worst <= 1e-5 * scale, "logits: max |Δ| \(worst) against max \(scale)")
    }

    /// Equal up to summation order and Foundation's JSON reader (on Linux it can miss the nearest double by an ulp).
    static func close(_ a: Double?, _ b: Double) -> Bool { a.map { abs($0 - b) <= 1e-12 * max(abs(b), 1e-300) } ?? false }

    /// Trained zero points that are integers already (steps made powers of two, offsets whole steps,
    /// so −b/s − Q_n is an integer in 1...7 exactly, fp16 included): the gptq layout keeps every code
    /// and zero point, and the two layouts' checkpoints load as the same weights bit for bit.
    @Test func integerZeroPointsAreStoredAsTheyAreInEitherLayout() throws {
        let (model, _) = try L4QTests.model(bits: 3, group: 32)
        let gptq = GPTQFormat.Settings(bits: 3, groupSize: 32, descAct: false, symmetric: false), lqlora = { var s = gptq; s.layout = .lqlora; return s }()
        var inGPTQ: [String: UniformQuantization] = [:], inLQLoRA: [String: UniformQuantization] = [:]
        for (i, layer) in model.layers.enumerated() {
            for (p, linear) in layer.linears {
                let l4q = try #require(linear as? QuantizationAwareLoRA)
                let steps = l4q.step.copy(), offsets = l4q.offset.copy(), qn: Float = -4
                for k in 0..<steps.count {
                    let s = Float(exp2(log2(Double(steps.pointer[k])).rounded()))
                    let zero = min(max((-offsets.pointer[k] / s - qn).rounded(), 1), 7)
                    (steps.pointer[k], offsets.pointer[k]) = (s, -s * (zero + qn))
                }
                l4q.rebind([l4q.a, l4q.b, steps, offsets])
                let (fractional, none) = l4q.quantization(storedAs: lqlora), (integral, rounding) = l4q.quantization(storedAs: gptq)
                #expect(none == nil && fractional.zeros.allSatisfy { $0 == $0.rounded() && (Float(1)...7).contains($0) })
                #expect(integral.codes == fractional.codes && integral.zeros == fractional.zeros && integral.scales == fractional.scales)
                #expect(rounding?.change.maxAbs == 0 && rounding?.clampedZeros == 0 && rounding?.zeroPoints == fractional.zeros.count)
                let name = LinearSite.projection(layer: i, p).weightName
                (inGPTQ[name], inLQLoRA[name]) = (integral, fractional)
            }
        }
        let base = try Checkpoint(path: trainFixtures + "/tiny"), root = NSTemporaryDirectory() + "lqlora-l4q-integral-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try GPTQFormat.write(from: base, quantized: inGPTQ, settings: gptq, modelConfig: try base.config() ?? [:], to: root + "/gptq")
        try GPTQFormat.write(from: base, quantized: inLQLoRA, settings: lqlora, modelConfig: try base.config() ?? [:], to: root + "/lqlora")
        let a = try LlamaModel(directory: root + "/gptq"), b = try LlamaModel(directory: root + "/lqlora")
        for (la, lb) in zip(a.layers, b.layers) {
            for ((p, x), (_, y)) in zip(la.linears, lb.linears) {
                #expect(x is UniformLinear && y is UniformLinear)
                #expect(x.denseWeight().array == y.denseWeight().array, "\(p)")
            }
        }
    }

    /// A zero point outside what v1 stores (a group of positive weights has one below 1, of negative
    /// ones above maxq) is clamped, and each code is then the level nearest its old value, found by
    /// searching all of them; v2, which stores 0, leaves a zero point near 0 at 0.
    @Test func zeroPointsOutsideTheStoredRangeAreClampedAndTheCodesFollow() {
        let zeros: [Float] = [-0.3, 0.4, 6.5, 15.4, 15.6, 20], rows = zeros.count, cols = 16
        let codes = (0..<(rows * cols)).map { UInt8(($0 * 7) % 16) }
        let q = UniformQuantization(quantizer: UniformQuantizer(bits: 4, symmetric: false), rows: rows, cols: cols, groupSize: cols, codes: codes,
                                    scales: [Float](repeating: 0.25, count: rows), zeros: zeros, groupIndex: [Int32](repeating: 0, count: cols))
        let v1 = GPTQFormat.Settings(bits: 4, groupSize: 16, descAct: false, symmetric: false).storableZeros
        let v2 = GPTQFormat.Settings(bits: 4, groupSize: 16, descAct: false, symmetric: false, zeroOffset: 0).storableZeros
        #expect(v1 == 1...15 && v2 == 0...15)
        let (moved, rounding) = q.withIntegerZeros(in: v1)
        #expect(moved.zeros == [1, 1, 6, 15, 15, 15] && rounding.clampedZeros == 4 && rounding.zeroPoints == 6)
        #expect(q.withIntegerZeros(in: v2).quantization.zeros == [0, 0, 6, 15, 15, 15])
        let before = q.dequantized(), after = moved.dequantized()
        var worst = 0.0
        for r in 0..<rows {
            for c in 0..<cols {
                let target = Double(before[r, c]), got = Double(after[r, c])
                let nearest = (0...15).map { abs(0.25 * (Double($0) - Double(moved.zeros[r])) - target) }.min()!
                #expect(abs(got - target) == nearest, "row \(r) column \(c)")
                worst = max(worst, abs(got - target))
            }
        }
        #expect(rounding.change.maxAbs == worst && worst > 0.125)
    }
}
