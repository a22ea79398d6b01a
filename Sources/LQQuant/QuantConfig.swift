import CKernels

/// How the per-block absmax values are stored.
public enum ScaleFormat: Hashable, Sendable {
    /// One fp32 absmax per block (no double quantization).
    case fp32
    /// bitsandbytes double quantization: absmax − mean as one byte per block into the signed
    /// dynamic map, one fp32 absmax per group of 256 blocks.
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

    /// The QLoRA points of the LQ-LoRA grid: 8-bit scales in groups of 256, fp32 group absmax.
    public static func qlora(bits: Int) -> QuantConfig {
        QuantConfig(bits: bits, blockSize: 64, scale: .uint(bits: 8, groupSize: 256, dtype: .fp32))
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

    /// Storage cost: b + b0/B0 + s/(B0·B1) for double quantization, b + 32/B0 without.
    public var bitsPerParameter: Double {
        let b = Double(bits), b0 = Double(blockSize)
        switch scale {
        case .fp32: return b + 32 / b0
        case .dynamic8: return b + 8 / b0 + 32 / (b0 * 256)
        case let .uint(sb, g, d): return b + Double(sb) / b0 + Double(d.bitCount) / (b0 * Double(g))
        }
    }

    /// A stable name, e.g. "nf4-b64-dq8" (bitsandbytes), "nf3-b64-fp32", "nf3-b64-s8g256-fp32".
    public var name: String {
        switch scale {
        case .fp32: return "nf\(bits)-b\(blockSize)-fp32"
        case .dynamic8: return "nf\(bits)-b\(blockSize)-dq8"
        case let .uint(sb, g, d): return "nf\(bits)-b\(blockSize)-s\(sb)g\(g)-\(d.rawValue)"
        }
    }

    public var description: String { name }

    /// Whether the kernels support this configuration.
    public var isValid: Bool {
        guard [2, 3, 4, 8].contains(bits), blockSize > 0, blockSize % 8 == 0 else { return false }
        switch scale {
        case .fp32, .dynamic8: return true
        case let .uint(sb, g, _): return [2, 3, 4, 8].contains(sb) && g > 0
        }
    }

    /// The C view of this format.
    var cFormat: lq_qformat {
        switch scale {
        case .fp32:
            return lq_qformat(bits: Int32(bits), block_size: Int32(blockSize), scale_kind: Int32(LQ_SCALES_F32.rawValue),
                              scale_bits: 32, scale_block_size: 0)
        case .dynamic8:
            return lq_qformat(bits: Int32(bits), block_size: Int32(blockSize), scale_kind: Int32(LQ_SCALES_DYNAMIC8.rawValue),
                              scale_bits: 8, scale_block_size: 256)
        case let .uint(sb, g, _):
            return lq_qformat(bits: Int32(bits), block_size: Int32(blockSize), scale_kind: Int32(LQ_SCALES_UINT.rawValue),
                              scale_bits: Int32(sb), scale_block_size: Int32(g))
        }
    }
}

extension QuantConfig {
    /// Parses a `name`: "nf4-b64-dq8", "nf3-b64-fp32" or a grid name such as "nf3-b64-s8g256-fp32".
    public static func parse(_ name: String) -> QuantConfig? {
        let parts = name.split(separator: "-").map(String.init)
        guard parts.count == 3 || parts.count == 4, parts[0].hasPrefix("nf"), let b = Int(parts[0].dropFirst(2)),
              parts[1].hasPrefix("b"), let bs = Int(parts[1].dropFirst()) else { return nil }
        if parts.count == 3 {
            switch parts[2] {
            case "fp32": return QuantConfig(bits: b, blockSize: bs, scale: .fp32)
            case "dq8": return QuantConfig(bits: b, blockSize: bs, scale: .dynamic8)
            default: return nil
            }
        }
        let s = parts[2]
        guard s.hasPrefix("s"), let gIndex = s.firstIndex(of: "g"),
              let sb = Int(s[s.index(after: s.startIndex)..<gIndex]),
              let g = Int(s[s.index(after: gIndex)...]),
              let d = ScaleDType(rawValue: parts[3]) else { return nil }
        return QuantConfig(bits: b, blockSize: bs, scale: .uint(bits: sb, groupSize: g, dtype: d))
    }
}
