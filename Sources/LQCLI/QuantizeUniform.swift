import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

extension Quantize {
    /// gptq and rtn: uniform integer codes with fp16 group scales and zero points, written in
    /// AutoGPTQ's v1 layout (transformers, AutoGPTQ and GPTQModel load it; so do eval, generate
    /// and finetune here).
    func quantizeUniform() throws {
        let start = Timing.now()
        let bits = self.bits ?? 4, group = self.groupSize ?? 128
        let options = GPTQ.Options(bits: bits, groupSize: group == -1 ? nil : group, symmetric: !asym, actOrder: actOrder,
                                   damp: Float(damp ?? 0.1))
        let checkpoint = try Checkpoint(path: model)
        try CheckpointValidation.requireDense(checkpoint)
        let modelConfig = try checkpoint.config() ?? [:]
        let m = try LlamaModel(directory: model)
        if let g = options.groupSize, let bad = m.layers.first?.linears.first(where: { $0.1.inFeatures < g }) {
            throw CLIError("--group-size \(g) is wider than \(bad.0.module)'s \(bad.1.inFeatures) inputs")
        }
        for (p, linear) in m.layers[0].linears where (linear.inFeatures * bits) % 32 != 0 || (linear.outFeatures * bits) % 32 != 0 {
            throw CLIError("\(p.module) [\(linear.outFeatures), \(linear.inFeatures)] at \(bits) bits does not pack into GPTQ's 32-bit words")
        }
        let calibration = try resolvedMethod == .gptq ? calibrationSamples(vocabulary: m.config.vocabSize) : []
        let staged = try output.staged()
        var committed = false
        defer { if !committed { staged.abandon() } }

        let total = m.config.layerCount * Projection.allCases.count
        let progress = Progress(total: total, label: resolvedMethod.rawValue)
        var done = 0
        let report: (GPTQCalibration.Event) -> Void = { event in
            if case let .matrix(site, q) = event {
                done += 1
                progress.update(done, detail: "\(site.module) rel_error \(String(format: "%.4f", q.relativeError))")
            }
        }
        let results = resolvedMethod == .gptq
            ? try GPTQCalibration.quantize(m, samples: calibration, options: options, progress: report)
            : try GPTQCalibration.roundToNearest(m, options: options, progress: report)
        let settings = GPTQFormat.Settings(bits: bits, groupSize: options.groupSize, descAct: actOrder, symmetric: !asym,
                                           damp: Double(options.damp))
        let quantized = Dictionary(uniqueKeysWithValues: results.map { ($0.site.weightName, $0.quantization) })
        try GPTQFormat.write(from: checkpoint, quantized: quantized, settings: settings, modelConfig: modelConfig, to: staged.staging)
        let seconds = Timing.now() - start
        let params = results.reduce(0) { $0 + $1.quantization.rows * $1.quantization.cols }
        // Codes plus an fp16 scale and a packed zero point per group and row.
        let storedBits = results.reduce(0.0) { sum, r in
            let q = r.quantization
            return sum + Double(q.rows * q.cols * bits + q.groupCount * q.rows * (16 + bits))
        }
        let rows: [[String: Any]] = results.map { r in
            var row: [String: Any] = ["name": r.site.weightName, "shape": [r.quantization.rows, r.quantization.cols], "bits": bits,
                                      "group_size": options.groupSize ?? -1, "rel_error": r.relativeError]
            if resolvedMethod == .gptq { row["damp"] = (Double(r.damp) * 1e6).rounded() / 1e6; row["gptq_loss"] = r.loss }
            return row
        }
        var summary: [String: Any] = ["method": resolvedMethod.rawValue, "bits": bits, "group_size": options.groupSize ?? -1,
                                      "sym": !asym, "act_order": actOrder, "average_bits": storedBits / Double(max(params, 1)),
                                      "parameters_quantized": params, "seconds": seconds, "matrices": rows, "format": "gptq"]
        if resolvedMethod == .gptq {
            summary["calibration"] = ["file": calib!, "samples": calibration.count, "seq_len": seqLen ?? 2048, "seed": seed ?? 0]
            summary["damp"] = Double(options.damp)
            summary["damp_raised"] = results.filter { $0.damp > options.damp }.map { $0.site.weightName }
        }
        try ModelFiles.writeJSON(summary, to: staged.path("quant_report.json"))
        try staged.commit()
        committed = true
        print(String(format: "%@: %d matrices to %d bits, group %@, %.3f bits per parameter, %.1f s → %@", resolvedMethod.rawValue,
                     results.count, bits, options.groupSize.map(String.init) ?? "none", storedBits / Double(max(params, 1)), seconds,
                     staged.destination))
    }

    /// `--samples` windows of `--seq-len` tokens at random starts (seeded) in the tokenized --calib
    /// file, as GPTQ's datautils draws them from WikiText-2's training text.
    func calibrationSamples(vocabulary: Int) throws -> [[Int]] {
        let path = calib!
        let text = try EvaluationText.read(path: path)
        let tokenizer = try loadTokenizer(directory: model, modelVocabularySize: vocabulary)
        let ids = try tokenizer.encode(text, addSpecialTokens: false)
        let length = seqLen ?? 2048, count = samples ?? 128
        guard ids.count > length else {
            throw CLIError("\(path): \(ids.count) tokens, fewer than one calibration window of --seq-len \(length)")
        }
        var rng = SeededGenerator(seed: UInt64(seed ?? 0))
        return (0..<count).map { _ in
            let s = Int(rng.next() % UInt64(ids.count - length))
            return Array(ids[s..<(s + length)])
        }
    }
}
