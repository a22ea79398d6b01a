import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

/// l4q.format gptq: the model L4Q trained, written with AutoGPTQ's integer zero points. The oracle
/// is the lqlora-layout model of the same run (same seed) and a search over every level and zero
/// point the gptq layout can store.
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

    /// Per module: the gptq checkpoint keeps lqlora's fp16 scales; each zero point is the integer in
    /// 1...15 nearest lqlora's fp16 one; each weight, read back by the GPTQ reader, is s·(k − z̃) for
    /// a code k in 0...15 that no other level beats in distance to lqlora's weight, at most half a
    /// step from it where the zero point was not clamped. The report's changes are those of the two
    /// checkpoints' weights, recomputed here.
    @Test func theGPTQModelIsTheNearestIntegerZeroModelToTheLQLoRAOneAndItsReportSaysHowFar() throws {
        let ws = try Workspace()
        let plain = try Self.train(ws, format: "lqlora", into: ws.root + "/lq")
        let trainer = try Self.train(ws, format: "gptq", into: ws.root + "/gptq")
        let (lq, lqSettings, lqReport) = try Self.open(ws.root + "/lq/model"), (gq, settings, report) = try Self.open(ws.root + "/gptq/model")
        #expect(lqSettings.layout == .lqlora && settings.layout == .gptq && settings.bits == 4 && settings.groupSize == 16)
        #expect(!settings.symmetric && !settings.descAct && settings.zeroOffset == 1)
        #expect(report["format"] as? String == "gptq-b4-g16-asym" && lqReport["zero_point_rounding"] == nil && plain.zeroPointRounding == nil)
        let rows = Dictionary(uniqueKeysWithValues: (report["matrices"] as! [[String: Any]]).map { ($0["name"] as! String, $0) })
        let modules = GPTQFormat.modules(in: gq)
        #expect(modules == GPTQFormat.modules(in: lq) && modules.count == 14 && rows.count == 14)
        var worst = 0.0, squares = 0.0, reference = 0.0, count = 0, zeroPoints = 0, clamped = 0
        for module in modules {
            let a = try GPTQFormat.load(module, from: lq, settings: lqSettings), b = try GPTQFormat.load(module, from: gq, settings: settings)
            #expect(b.scales == a.scales && b.groupIndex == a.groupIndex, "\(module)")
            var moduleWorst = 0.0, moduleSquares = 0.0, moduleReference = 0.0, moduleClamped = 0
            for (z, zt) in zip(a.zeros, b.zeros) {
                #expect(zt == zt.rounded() && (Float(1)...15).contains(zt), "\(module): zero point \(zt)")
                let best = (1...15).map { abs(Float($0) - z) }.min()!
                #expect(abs(zt - z) == best, "\(module): zero point \(z) stored as \(zt)")
                if !(Float(1)...15).contains(z.rounded(.toNearestOrEven)) { moduleClamped += 1 }
            }
            let wa = a.dequantized(), wb = b.dequantized()
            for e in 0..<wa.count {
                let (r, c) = e.quotientAndRemainder(dividingBy: a.cols), g = Int(a.groupIndex[c]) * a.rows + r
                let s = Double(a.scales[g]), zt = Double(b.zeros[g]), target = Double(wa.pointer[e]), got = Double(wb.pointer[e])
                #expect(b.codes[e] <= 15 && wb.pointer[e] == a.scales[g] * (Float(b.codes[e]) - b.zeros[g]), "\(module)[\(e)]")
                let nearest = (0...15).map { abs(s * (Double($0) - zt) - target) }.min()!
                #expect(abs(got - target) <= nearest + 1e-6 * abs(s), "\(module)[\(e)]: \(got) for \(target), a level \(nearest) away exists")
                if (Float(1)...15).contains(a.zeros[g].rounded(.toNearestOrEven)) {
                    #expect(abs(got - target) <= (0.5 + 1e-6) * abs(s), "\(module)[\(e)]: moved by more than half a step")
                }
                let d = got - target
                moduleWorst = max(moduleWorst, abs(d))
                moduleSquares += d * d
                moduleReference += target * target
            }
            let n = Double(wa.count), entry = try #require(rows[module + ".weight"]?["zero_point_rounding"] as? [String: Any])
            #expect(Self.close(entry["max_abs_change"] as? Double, moduleWorst), "\(module)")
            #expect(Self.close(entry["rms_change"] as? Double, (moduleSquares / n).squareRoot()), "\(module)")
            #expect(Self.close(entry["relative_change"] as? Double, (moduleSquares / moduleReference).squareRoot()), "\(module)")
            #expect(entry["zero_points"] as? Int == a.zeros.count && entry["zero_points_clamped"] as? Int == moduleClamped, "\(module)")
            (worst, squares, reference, count) = (max(worst, moduleWorst), squares + moduleSquares, reference + moduleReference, count + wa.count)
            zeroPoints += a.zeros.count
            clamped += moduleClamped
        }
        let total = try #require(report["zero_point_rounding"] as? [String: Any])
        #expect(Self.close(total["max_abs_change"] as? Double, worst) && worst > 0)
        #expect(Self.close(total["rms_change"] as? Double, (squares / Double(count)).squareRoot()))
        #expect(Self.close(total["relative_change"] as? Double, (squares / reference).squareRoot()))
        #expect(total["zero_points"] as? Int == zeroPoints && total["zero_points_clamped"] as? Int == clamped)
        #expect(total["zero_point_range"] as? [Int] == [1, 15])
        let rounding = try #require(trainer.zeroPointRounding)
        #expect(rounding.change.maxAbs == worst && rounding.zeroPoints == zeroPoints && rounding.clampedZeros == clamped)
        // Loaded, every projection runs on the uniform kernels, as the lqlora layout's do.
        let loaded = try LlamaModel(directory: ws.root + "/gptq/model")
        #expect(loaded.layers.allSatisfy { $0.linears.allSatisfy { $0.1 is UniformLinear } })
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
