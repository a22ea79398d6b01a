import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor
import LQTrain
import Testing

struct OptimizerTests {
    /// Ten AdamW steps on the fixture batch, the loss before each, against torch.optim.AdamW.
    func losses(clip: Double?) throws -> ([Double], [Double]) {
        let (model, params) = try tinyModelWithAdapter()
        let (tokens, labels, file) = try fixtureBatch()
        var settings = AdamW.Settings()
        settings.weightDecay = 0.01
        let optimizer = AdamW(parameters: params, settings: settings)
        var losses: [Double] = []
        for _ in 0..<10 {
            params.zeroGradients()
            var rng = SeededGenerator(seed: 0)
            losses.append(model.accumulateGradients(tokens: tokens, labels: labels, normalizer: targetCount(labels), into: params, rng: &rng).mean)
            if let clip { clipGradientNorm(params, maxNorm: clip) }
            optimizer.update(params, learningRate: 1e-2)
        }
        let reference = try file.floatTensor(clip == nil ? "adamw_losses" : "clipped_losses").array.map(Double.init)
        return (losses, reference)
    }

    @Test func tenAdamWStepsMatchTorch() throws {
        let (got, reference) = try losses(clip: nil)
        #expect(got.count == reference.count && !got.isEmpty)
        for (a, b) in zip(got, reference) { #expect(abs(a - b) <= 2e-4 * b, "losses \(got) vs torch \(reference)") }
    }

    @Test func tenClippedAdamWStepsMatchTorch() throws {
        let (got, reference) = try losses(clip: 0.05)
        #expect(got.count == reference.count && !got.isEmpty)
        for (a, b) in zip(got, reference) { #expect(abs(a - b) <= 2e-4 * b, "losses \(got) vs torch \(reference)") }
    }

    @Test func eightBitAdamWMatchesBitsandbytes() throws {
        let f = try SafeTensorsFile(path: trainFixtures + "/adamw8bit.safetensors")
        #expect(try f.floatTensor("qmap1").array == DynamicQuantizer.signed.code)
        #expect(try f.floatTensor("qmap2").array == DynamicQuantizer.unsigned.code)
        let big = try f.floatTensor("p0_big").copy(), small = try f.floatTensor("p0_small").copy()
        let params = AdapterParameters(names: ["big", "small"], values: [big, small])
        var settings = AdamW.Settings()
        settings.weightDecay = 0.01
        let optimizer = AdamW8bit(parameters: params, settings: settings)
        for step in 0..<3 {
            params.grads[0].pointer.update(from: try f.floatTensor("grad\(step)_big").pointer, count: 8192)
            params.grads[1].pointer.update(from: try f.floatTensor("grad\(step)_small").pointer, count: 1000)
            optimizer.update(params, learningRate: 1e-2)
            for (name, value) in [("big", big), ("small", small)] {
                let reference = try f.floatTensor("p\(step + 1)_\(name)")
                var worst: Float = 0
                for i in 0..<reference.count { worst = max(worst, abs(reference.pointer[i] - value.pointer[i])) }
                #expect(worst <= 1e-6, "step \(step + 1), \(name): max |Δp| \(worst)")
            }
        }
        let state = optimizer.stateTensors(names: ["big"]).filter { $0.name.hasPrefix("big.") }
        func bytes(_ t: PendingTensor) -> [UInt8] {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: t.byteCount, alignment: 16)
            defer { buffer.deallocate() }
            try! t.fill(buffer)
            return Array(buffer)
        }
        for (ours, theirs) in [("big.state1", "state1"), ("big.state2", "state2")] {
            let got = bytes(state.first { $0.name == ours }!)
            let reference = try f.floatTensor(theirs).array.map { UInt8($0) }
            let differing = zip(got, reference).filter { $0 != $1 }.count
            #expect(differing == 0, "\(theirs): \(differing) of \(got.count) codes differ from bitsandbytes")
        }
        #expect(optimizer.stateBytes == 2 * 8192 + 4 * 64 + 8 * 1000)
    }

    @Test func schedulesFollowTransformers() {
        // transformers' get_{constant,linear,cosine}_schedule_with_warmup with 10 warmup steps of 100.
        let c = LearningRateSchedule(kind: .constant, peak: 1, warmup: 10, total: 100)
        let l = LearningRateSchedule(kind: .linear, peak: 1, warmup: 10, total: 100)
        let k = LearningRateSchedule(kind: .cosine, peak: 1, warmup: 10, total: 100)
        #expect(c.rate(at: 0) == 0 && c.rate(at: 5) == 0.5 && c.rate(at: 10) == 1 && c.rate(at: 99) == 1)
        #expect(l.rate(at: 10) == 1 && abs(l.rate(at: 55) - 0.5) < 1e-12 && l.rate(at: 100) == 0)
        #expect(k.rate(at: 10) == 1 && abs(k.rate(at: 55) - 0.5) < 1e-12 && abs(k.rate(at: 100)) < 1e-12)
    }
}
