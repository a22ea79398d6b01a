import Foundation
import LQTensor

/// A configuration's fields as quant_report.json lists them (every quantize method writes these).
public struct ConfigReport: Codable, Equatable, Sendable {
    public var name: String
    public var bits: Int
    public var blockSize: Int
    public var scaleBits: Int
    /// nil for one fp32 absmax per block (written as null).
    public var scaleBlockSize: Int?
    public var scaleDType: String
    /// Only for bitsandbytes' double quantization (left out otherwise).
    public var scaleMap: String?

    enum CodingKeys: String, CodingKey {
        case name, bits
        case blockSize = "block_size", scaleBits = "scale_bits", scaleBlockSize = "scale_block_size"
        case scaleDType = "scale_dtype", scaleMap = "scale_map"
    }

    public init(_ c: QuantConfig) {
        name = c.name
        bits = c.bits
        blockSize = c.blockSize
        let t = c.scale.traits
        scaleBits = t.bits
        scaleBlockSize = t.groupSize
        scaleDType = t.dtype.rawValue
        scaleMap = t.map
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(bits, forKey: .bits)
        try c.encode(blockSize, forKey: .blockSize)
        try c.encode(scaleBits, forKey: .scaleBits)
        try c.encode(scaleBlockSize, forKey: .scaleBlockSize)
        try c.encode(scaleDType, forKey: .scaleDType)
        try c.encodeIfPresent(scaleMap, forKey: .scaleMap)
    }
}

extension QuantizedMatrix {
    /// ‖W − Ŵ‖_F / ‖W‖_F against the weights `w` it was made from (0 for all-zero weights).
    public func relativeError(to w: Tensor) -> Double {
        let d = dequantize()
        var num = 0.0
        for i in 0..<w.count {
            let e = Double(w.pointer[i]) - Double(d.pointer[i])
            num += e * e
        }
        let den = w.frobeniusNorm
        return den > 0 ? num.squareRoot() / den : 0
    }
}
