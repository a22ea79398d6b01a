import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// L4Q in the training loop (l4q.bits): every target projection of a dense base becomes a
/// QuantizationAwareLoRA (A as PEFT initialises it, B zero: training starts at the min–max
/// round-to-nearest model); the run ends with one uniform-integer model in output_dir/model.
extension Trainer {
    /// Wraps the target projections; a base that is already quantized is refused by name.
    static func attachL4Q(to model: LlamaModel, config: TrainConfig, rng: inout SeededGenerator) throws -> AdapterParameters {
        let bits = config.l4qBits!
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
                                                 bits: bits, groupSize: group)
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

    /// output_dir/model: the base's files with each trained projection as uniform codes, fp16
    /// scales and fp16 fractional zero points (GPTQFormat's lqlora_uniform variant), and
    /// quant_report.json; written under a temporary name and renamed.
    func writeQuantizedModel() throws -> String {
        let directory = config.outputDir + "/model", temp = directory + ".partial"
        let fm = FileManager.default
        try? fm.removeItem(atPath: temp)
        let checkpoint = try Checkpoint(path: config.model)
        let layers = quantizationAwareLayers
        let quantized = Dictionary(uniqueKeysWithValues: layers.map { ($0.0.weightName, $0.1.quantization()) })
        let group = config.l4qGroupSize == 0 ? nil : config.l4qGroupSize
        let settings = GPTQFormat.Settings(bits: config.l4qBits!, groupSize: group, descAct: false, symmetric: false, layout: .lqlora)
        try GPTQFormat.write(from: checkpoint, quantized: quantized, settings: settings, modelConfig: try checkpoint.config() ?? [:], to: temp)
        var parameters = 0, bits = 0.0
        let rows: [[String: Any]] = layers.map { site, layer in
            let n = layer.outFeatures * layer.inFeatures, b = settings.bitsPerParameter(columns: layer.inFeatures)
            parameters += n
            bits += Double(n) * b
            return ["name": site.weightName, "shape": [layer.outFeatures, layer.inFeatures], "bits": config.l4qBits!, "group_size": group ?? -1,
                    "bits_per_parameter": b]
        }
        let report: [String: Any] = ["method": "l4q", "bits": config.l4qBits!, "group_size": group ?? -1, "format": settings.name,
                                     "average_bits": bits / Double(max(parameters, 1)), "parameters_quantized": parameters, "steps": step,
                                     "warmup_steps": config.l4qWarmupSteps, "rank": config.rank, "alpha": config.alpha, "matrices": rows]
        try ModelFiles.writeJSON(report, to: temp + "/quant_report.json")
        try AtomicDirectory.replace(directory, with: temp)
        return directory
    }
}
