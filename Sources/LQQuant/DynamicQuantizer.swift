import CKernels

/// bitsandbytes' 8-bit blockwise quantization against a dynamic map, as its CPU backend does it:
/// per block of 256 the absmax, then each value · (1/absmax) coded through the 65,536-entry table.
/// Used for double-quantized NF4 scales (signed map) and 8-bit optimizer states (signed / unsigned).
public final class DynamicQuantizer: @unchecked Sendable {
    public static let signed = DynamicQuantizer(code: bitsandbytesDynamicMap)
    public static let unsigned = DynamicQuantizer(code: bitsandbytesUnsignedDynamicMap)
    public static let blockSize = 256

    public let code: [Float]
    let table: [UInt8]

    init(code: [Float]) {
        self.code = code
        var lut = [UInt8](repeating: 0, count: 65536)
        code.withUnsafeBufferPointer { lq_bnb_build_lut($0.baseAddress, &lut) }
        table = lut
    }

    /// Codes and per-block absmax for values[0, count).
    public func quantize(_ values: UnsafePointer<Float>, count: Int, codes: UnsafeMutablePointer<UInt8>, absmax: UnsafeMutablePointer<Float>) {
        let bs = Self.blockSize
        let blocks = (count + bs - 1) / bs
        for b in 0..<blocks {
            var m: Float = 0
            for i in (b * bs)..<min(count, (b + 1) * bs) { m = max(m, abs(values[i])) }
            absmax[b] = m
        }
        table.withUnsafeBufferPointer { lq_bnb_encode8(values, Int64(count), Int32(bs), absmax, $0.baseAddress, codes) }
    }

    public func dequantize(_ codes: UnsafePointer<UInt8>, count: Int, absmax: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count { out[i] = code[Int(codes[i])] * absmax[i / Self.blockSize] }
    }
}
