import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// L4Q in the training loop (l4q.bits): every target projection of a dense base becomes a
/// QuantizationAwareLoRA (A as PEFT initialises it, B zero: training starts at the min–max
/// round-to-nearest model); the run ends with one uniform-integer model in output_dir/model.
/// l4q.format gptq trains on that layout's integer zero points (QuantizationAwareLoRA's
/// `integerZeros`), so the model written is the model trained.
extension Trainer {
    /// output_dir/model's layout for l4q.bits, l4q.group_size and l4q.format.
    static func l4qLayout(_ config: TrainConfig) -> GPTQFormat.Settings {
        GPTQFormat.Settings(bits: config.l4qBits!, groupSize: config.l4qGroupSize == 0 ? nil : config.l4qGroupSize, descAct: false,
                            symmetric: false, layout: config.l4qFormat)
    }

    /// Wraps the target projections; a base that is already quantized is refused by name.
    static func attachL4Q(to model: LlamaModel, config: TrainConfig, rng: inout SeededGenerator) throws -> AdapterParameters {
        let bits = config.l4qBits!, layout = l4qLayout(config)
        let integerZeros = layout.layout == .gptq ? layout.storableZeros : nil
        let adapter = AdapterConfig(rank: config.rank, alpha: config.alpha, targetModules: config.targets, useRSLoRA: config.rsLoRA)
        for (i, layer) in model.layers.enumerated() {
            for (p, linear) in layer.linears where adapter.targets(p.module) {
                let site = LinearSite.projection(layer: i, p)
                guard linear is DenseLinear || linear is HalfLinear else {
                    throw TrainingError.l4qBase(path: config.model, detail: "\(site.weightName) is already quantized; L4Q quantizes a dense (16- or 32-bit) model itself")
                }
                let group = config.l4qGroupSize == 0 ? linear.inFeatures : config.l4qGroupSize
                guard group <= linear.inFeatures, (linear.inFeatures * bits) % 32 == 0, (linear.outFeatures * bits) % 32 == 0 else {
                    throw TrainingError.l4qBase(path: config.model, detail: "\(site.weightName) [\(linear.outFeatures), \(linear.inFeatures)] takes no \(bits)-bit codes in groups of \(group) (32-bit packing, group within a row)")
                }
                let bound = 1 / Float(linear.inFeatures).squareRoot()
                let a = Tensor(zeros: [config.rank, linear.inFeatures])
                for k in 0..<a.count { a.pointer[k] = (Float(rng.next() >> 40) * 0x1p-24 * 2 - 1) * bound }
                layer[p] = QuantizationAwareLoRA(base: linear, a: a, b: Tensor(zeros: [linear.outFeatures, config.rank]), scale: adapter.scale,
                                                 bits: bits, groupSize: group, integerZeros: integerZeros)
            }
        }
        return AdapterParameters(model: model, config: adapter, dropout: 0)
    }

    var quantizationAwareLayers: [(LinearSite, QuantizationAwareLoRA)] {
        model.layers.enumerated().flatMap { i, layer in
            layer.linears.compactMap { p, l in (l as? QuantizationAwareLoRA).map { (LinearSite.projection(layer: i, p), $0) } }
        }
    }

    /// The quantizer is off for the first l4q.warmup_steps steps.
    func setQuantizing(forStep step: Int) {
        let on = step >= config.l4qWarmupSteps
        for (_, layer) in quantizationAwareLayers where layer.quantizing != on { layer.quantizing = on }
    }

    /// output_dir/model: the base's files with each trained projection as uniform codes and fp16
    /// scales, quant_report.json beside them; written under a temporary name and renamed. Zero points
    /// in l4q.format's layout: fp16 fractional ones (lqlora), the trained model up to fp16; or AutoGPTQ's
    /// integers (gptq), trained as such, with the weights' change from the model lqlora would store
    /// (0: the rounding finds every zero point an integer already) in the report and `zeroPointRounding`.
    func writeQuantizedModel() throws -> String {
        let directory = config.outputDir + "/model", temp = directory + ".partial"
        let fm = FileManager.default
        try? fm.removeItem(atPath: temp)
        let checkpoint = try Checkpoint(path: config.model)
        let settings = Self.l4qLayout(config), group = settings.groupSize
        var quantized: [String: UniformQuantization] = [:], rows: [[String: Any]] = []
        var parameters = 0, bits = 0.0, total = ZeroPointRounding(allowed: settings.storableZeros)
        for (site, layer) in quantizationAwareLayers {
            let n = layer.outFeatures * layer.inFeatures, b = settings.bitsPerParameter(columns: layer.inFeatures)
            parameters += n
            bits += Double(n) * b
            var row: [String: Any] = ["name": site.weightName, "shape": [layer.outFeatures, layer.inFeatures], "bits": config.l4qBits!,
                                      "group_size": group ?? -1, "bits_per_parameter": b]
            let (q, rounding) = layer.quantization(storedAs: settings)
            quantized[site.weightName] = q
            if let rounding {
                row["zero_point_rounding"] = rounding.json
                total.add(rounding)
            }
            rows.append(row)
        }
        try GPTQFormat.write(from: checkpoint, quantized: quantized, settings: settings, modelConfig: try checkpoint.config() ?? [:], to: temp)
        var report: [String: Any] = ["method": "l4q", "bits": config.l4qBits!, "group_size": group ?? -1, "format": settings.name,
                                     "average_bits": bits / Double(max(parameters, 1)), "parameters_quantized": parameters, "steps": step,
                                     "warmup_steps": config.l4qWarmupSteps, "rank": config.rank, "alpha": config.alpha, "matrices": rows]
        if settings.layout == .gptq {
            report["zero_point_rounding"] = total.json
            zeroPointRounding = total
        }
        try ModelFiles.writeJSON(report, to: temp + "/quant_report.json")
        try AtomicDirectory.replace(directory, with: temp)
        return directory
    }
}
