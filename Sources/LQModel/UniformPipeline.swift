import LQQuant

/// GPTQ or round to nearest over every projection of a model, with the report of what each matrix
/// got: what `quantize --method gptq|rtn` runs on a dense checkpoint and `merge --requantize` on
/// the merged weights. The caller writes the result (GPTQFormat.write) in either layout.
public enum UniformPipeline {
    public enum Method: String, CaseIterable, Sendable {
        /// Layer-sequential GPTQ on calibration windows (GPTQCalibration.quantize).
        case gptq
        /// The same quantizer without the Hessian update.
        case rtn
    }

    public struct Options: Sendable {
        public var method: Method
        public var quantization: GPTQ.Options
        /// Where the zero points go: AutoGPTQ's packed qzeros or lqlora's fp16 zeros.
        public var layout: GPTQFormat.Layout
        /// GPTQ's true_sequential (GPTQConfig's default): each block's projections in the groups
        /// [k, v, q], [o], [up, gate], [down], each from inputs through the groups before it; false:
        /// all seven from one pass through the unquantized block.
        public var trueSequential: Bool

        public init(method: Method, quantization: GPTQ.Options = GPTQ.Options(), layout: GPTQFormat.Layout = .gptq,
                    trueSequential: Bool = true) {
            self.method = method
            self.quantization = quantization
            self.layout = layout
            self.trueSequential = trueSequential
        }

        /// A Float option as the decimal it was given as (0.1, not 0.10000000149011612).
        static func decimal(_ value: Float) -> Double { (Double(value) * 1e6).rounded() / 1e6 }

        /// The output's quantization_config.
        public var settings: GPTQFormat.Settings {
            let o = quantization
            return GPTQFormat.Settings(bits: o.bits, groupSize: o.groupSize, descAct: o.actOrder, symmetric: o.symmetric,
                                       damp: Self.decimal(o.damp), trueSequential: trueSequential, staticGroups: o.staticGroups,
                                       layout: layout)
        }
    }

    public struct Result: Sendable {
        public let options: Options
        /// Every projection's quantization, in model order.
        public let matrices: [GPTQCalibration.Quantized]

        /// Keyed by weight name ("….q_proj.weight"), as GPTQFormat.write takes them.
        public var quantized: [String: UniformQuantization] {
            Dictionary(uniqueKeysWithValues: matrices.map { ($0.site.weightName, $0.quantization) })
        }

        public var parameters: Int { matrices.reduce(0) { $0 + $1.quantization.rows * $1.quantization.cols } }

        /// Bits stored per parameter: the codes plus each group's fp16 scale and zero point.
        public var averageBits: Double {
            let s = options.settings
            return Double(matrices.reduce(0) { $0 + s.storedBits($1.quantization) }) / Double(max(parameters, 1))
        }

        /// quant_report.json: the settings, every matrix's shape, bits, group and relative error (and
        /// GPTQ's damping and loss), which matrices needed more damping, the layout and the time.
        public func report(seconds: Double, calibration: [String: Any]? = nil) -> [String: Any] {
            let o = options.quantization, gptq = options.method == .gptq
            let rows: [[String: Any]] = matrices.map { m in
                var row: [String: Any] = ["name": m.site.weightName, "shape": [m.quantization.rows, m.quantization.cols], "bits": o.bits,
                                          "group_size": o.groupSize ?? -1, "rel_error": m.relativeError]
                if gptq { row["damp"] = Options.decimal(m.damp); row["gptq_loss"] = m.loss }
                return row
            }
            var report: [String: Any] = ["method": options.method.rawValue, "bits": o.bits, "group_size": o.groupSize ?? -1,
                                         "sym": o.symmetric, "act_order": o.actOrder, "average_bits": averageBits,
                                         "parameters_quantized": parameters, "seconds": seconds, "matrices": rows,
                                         "format": options.layout.rawValue, "quant_method": options.settings.json["quant_method"]!]
            if gptq {
                report["damp"] = Options.decimal(o.damp)
                report["static_groups"] = o.staticGroups
                report["true_sequential"] = options.trueSequential
                report["damp_raised"] = matrices.filter { $0.damp > o.damp }.map { $0.site.weightName }
                if let calibration { report["calibration"] = calibration }
            }
            return report
        }
    }

    /// Quantizes every projection of `model` in place (GPTQ on the `calibration` windows, which it
    /// needs; RTN ignores them), each matrix reported to `progress` as it is done.
    public static func run(_ model: LlamaModel, calibration: [[Int]], options: Options,
                           progress: (GPTQCalibration.Event) -> Void = { _ in }) throws -> Result {
        let matrices = options.method == .gptq
            ? try GPTQCalibration.quantize(model, samples: calibration, options: options.quantization,
                                           trueSequential: options.trueSequential, progress: progress)
            : try GPTQCalibration.roundToNearest(model, options: options.quantization, progress: progress)
        return Result(options: options, matrices: matrices)
    }
}
