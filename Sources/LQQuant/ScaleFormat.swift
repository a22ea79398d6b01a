import CKernels

/// How the per-block absmax values are stored. Each format's facts live in its `traits` row; the
/// quantizer, the C view, the file layouts, the names and the costs read them from there.
public enum ScaleFormat: Hashable, Sendable {
    /// One fp32 absmax per block (no double quantization).
    case fp32
    /// bitsandbytes double quantization: absmax − mean as one byte per block into the signed
    /// dynamic map, one fp32 absmax per group of `DynamicQuantizer.blockSize` blocks.
    case dynamic8
    /// LQ-LoRA double quantization: absmax − min as `bits`-bit unsigned integers, one group absmax
    /// per `groupSize` blocks stored as `dtype`.
    case uint(bits: Int, groupSize: Int, dtype: ScaleDType)
}

/// Storage type of LQ-LoRA's group absmax values.
public enum ScaleDType: String, CaseIterable, Codable, Sendable {
    case fp32, bf16, fp16

    public var bitCount: Int { self == .fp32 ? 32 : 16 }
}

/// Which arrays of `QuantizedMatrix` (and tensors of lqlora's file layout) hold the scales.
public enum ScaleLayout: Sendable, Equatable {
    /// `absmax`: one fp32 value per block.
    case perBlock
    /// `scaleCodes` per block, `groupAbsmax` per group of blocks and one `scaleOffset`.
    case doubleQuantized
}

extension ScaleFormat {
    /// One row of the format table.
    public struct Traits: Sendable, Equatable {
        /// Bits stored per block for its scale.
        public let bits: Int
        /// Blocks that share one group absmax; nil where there are no groups.
        public let groupSize: Int?
        /// Storage type of the group absmax (of the block absmax for `.perBlock`).
        public let dtype: ScaleDType
        /// What follows "nfB-bS-" in a configuration's name.
        public let name: String
        /// The code book of the scale codes as quant_report.json names it; nil for integers or none.
        public let map: String?
        /// Whether bitsandbytes stores it (with 4-bit codes in blocks of 64).
        public let bitsandbytes: Bool
        public let layout: ScaleLayout
        /// The kernels' name for it (lq_quant.h).
        let kind: lq_scale_kind
    }

    /// The table. A new format is a row here plus its kernels (lq_quant.h, `Quantizer`).
    public var traits: Traits {
        switch self {
        case .fp32:
            return Traits(bits: 32, groupSize: nil, dtype: .fp32, name: "fp32", map: nil, bitsandbytes: true,
                          layout: .perBlock, kind: LQ_SCALES_F32)
        case .dynamic8:
            return Traits(bits: 8, groupSize: DynamicQuantizer.blockSize, dtype: .fp32, name: "dq8", map: "bitsandbytes-dynamic",
                          bitsandbytes: true, layout: .doubleQuantized, kind: LQ_SCALES_DYNAMIC8)
        case let .uint(bits, groupSize, dtype):
            return Traits(bits: bits, groupSize: groupSize, dtype: dtype, name: "s\(bits)g\(groupSize)-\(dtype.rawValue)", map: nil,
                          bitsandbytes: false, layout: .doubleQuantized, kind: LQ_SCALES_UINT)
        }
    }

    /// The formats without parameters, which names identify whole.
    static let named: [ScaleFormat] = [.fp32, .dynamic8]

    /// Parses a `traits.name`: "fp32", "dq8" or "s8g256-fp32".
    init?(name: String) {
        if let f = Self.named.first(where: { $0.traits.name == name }) {
            self = f
            return
        }
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].hasPrefix("s"), let g = parts[0].firstIndex(of: "g"),
              let bits = Int(parts[0][parts[0].index(after: parts[0].startIndex)..<g]),
              let groupSize = Int(parts[0][parts[0].index(after: g)...]),
              let dtype = ScaleDType(rawValue: String(parts[1])) else { return nil }
        self = .uint(bits: bits, groupSize: groupSize, dtype: dtype)
    }

    /// Whether the kernels support its parameters.
    var isValid: Bool {
        let t = traits
        return t.kind != LQ_SCALES_UINT || ([2, 3, 4, 8].contains(t.bits) && (t.groupSize ?? 0) > 0)
    }
}
