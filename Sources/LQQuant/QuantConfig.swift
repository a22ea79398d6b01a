import CKernels

/// One quantization format: NormalFloat codes of `bits` bits in blocks of `blockSize`, with
/// scales stored per `scale`. This table drives the quantizer, the kernels, the file layout and
/// (next) the ILP's choice per matrix.
public struct QuantConfig: Hashable, Sendable, CustomStringConvertible {
    public let bits: Int
    public let blockSize: Int
    public let scale: ScaleFormat

    public init(bits: Int, blockSize: Int, scale: ScaleFormat) {
        self.bits = bits
        self.blockSize = blockSize
        self.scale = scale
    }

    /// bitsandbytes NF4 with double quantization (QLoRA): 4.127 bits per parameter.
    public static let nf4DoubleQuant = QuantConfig(bits: 4, blockSize: 64, scale: .dynamic8)

    /// Plain NF-k with an fp32 absmax per block of 64 (bitsandbytes' compress_statistics=False).
    public static func plain(bits: Int, blockSize: Int = 64) -> QuantConfig {
        QuantConfig(bits: bits, blockSize: blockSize, scale: .fp32)
    }

    /// The QLoRA points of the LQ-LoRA grid: 8-bit scales in bitsandbytes' groups
    /// (`DynamicQuantizer.blockSize` blocks), fp32 group absmax.
    public static func qlora(bits: Int, blockSize: Int = 64) -> QuantConfig {
        QuantConfig(bits: bits, blockSize: blockSize, scale: .uint(bits: 8, groupSize: DynamicQuantizer.blockSize, dtype: .fp32))
    }

    /// LQ-LoRA's grid: bits {2,3,4,8} × block {16,32,64} × scale bits {2,3,4,8} × scale group
    /// {16,64,256} × group absmax {fp32,bf16,fp16}: 432 configurations.
    public static let lqloraGrid: [QuantConfig] = {
        var out: [QuantConfig] = []
        for b in [2, 3, 4, 8] {
            for b0 in [16, 32, 64] {
                for sb in [2, 3, 4, 8] {
                    for g in [16, 64, 256] {
                        for d in ScaleDType.allCases {
                            out.append(QuantConfig(bits: b, blockSize: b0, scale: .uint(bits: sb, groupSize: g, dtype: d)))
                        }
                    }
                }
            }
        }
        return out
    }()

    /// Storage cost: b + s/B0 + d/(B0·B1) with groups of B1 blocks (group absmax of d bits), b + s/B0 without.
    public var bitsPerParameter: Double {
        let t = scale.traits, b0 = Double(blockSize)
        var total = Double(bits) + Double(t.bits) / b0
        if let g = t.groupSize { total += Double(t.dtype.bitCount) / (b0 * Double(g)) }
        return total
    }

    /// A stable name, e.g. "nf4-b64-dq8" (bitsandbytes), "nf3-b64-fp32", "nf3-b64-s8g256-fp32".
    public var name: String { "nf\(bits)-b\(blockSize)-\(scale.traits.name)" }

    public var description: String { name }

    /// Whether the kernels support this configuration.
    public var isValid: Bool { [2, 3, 4, 8].contains(bits) && blockSize > 0 && blockSize % 8 == 0 && scale.isValid }

    /// Whether bitsandbytes (and so transformers) can load it: NF4 in blocks of 64 with a scale
    /// format it knows.
    public var isBitsandbytesCompatible: Bool { bits == 4 && blockSize == 64 && scale.traits.bitsandbytes }

    /// The C view of this format.
    var cFormat: lq_qformat {
        let t = scale.traits
        return lq_qformat(bits: Int32(bits), block_size: Int32(blockSize), scale_kind: Int32(t.kind.rawValue),
                          scale_bits: Int32(t.bits), scale_block_size: Int32(t.groupSize ?? 0))
    }
}

extension QuantConfig {
    /// Parses a `name`: "nf4-b64-dq8", "nf3-b64-fp32" or a grid name such as "nf3-b64-s8g256-fp32".
    public static func parse(_ name: String) -> QuantConfig? {
        let parts = name.split(separator: "-").map(String.init)
        guard parts.count == 3 || parts.count == 4, parts[0].hasPrefix("nf"), let b = Int(parts[0].dropFirst(2)),
              parts[1].hasPrefix("b"), let bs = Int(parts[1].dropFirst()),
              let scale = ScaleFormat(name: parts[2...].joined(separator: "-")) else { return nil }
        return QuantConfig(bits: b, blockSize: bs, scale: scale)
    }
}
