import CKernels
import Foundation
import LQTensor

/// Quantizes fp32 matrices to any `QuantConfig`, matching the reference arithmetic:
/// bitsandbytes for `.fp32` and `.dynamic8` scales (x · (1/absmax), clamped; weights coded against
/// the exact absmax), LQ-LoRA for `.uint` scales (weights divided by the double-quantized scales).
public enum Quantizer {
    public static func quantize(_ w: Tensor, config: QuantConfig, name: String = "tensor") throws -> QuantizedMatrix {
        guard config.isValid else { throw QuantError.invalidConfig(config.name) }
        guard w.rank == 2 else { throw QuantError.notAMatrix(tensor: name, shape: w.shape) }
        let rows = w.shape[0], cols = w.shape[1], n = rows * cols
        // LQ-LoRA's grid needs whole blocks; the last group of blocks may be short (the reference
        // implementation reshapes to whole groups and cannot quantize, e.g., SmolLM2's 192×576 k_proj).
        if case .uint = config.scale, n % config.blockSize != 0 {
            throw QuantError.notDivisible(tensor: name, count: n, multiple: config.blockSize, config: config.name)
        }
        let values = UnsafeBufferPointer(w.buffer)
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw QuantError.nonFinite(tensor: name, index: bad, value: values[bad])
        }
        let blocks = (n + config.blockSize - 1) / config.blockSize
        let absmax = blockAbsmax(values, blockSize: config.blockSize)

        switch config.scale {
        case .fp32:
            let codes = encode(values, config: config, scales: absmax, mode: LQ_ENCODE_BITSANDBYTES)
            return QuantizedMatrix(config: config, rows: rows, cols: cols, codes: codes, absmax: absmax)

        case .dynamic8:
            // bitsandbytes: offset = mean(absmax) (PyTorch's float32 sum order); absmax − offset
            // through its CPU 8-bit blockwise quantizer (the one its 8-bit optimizers use).
            let offset = TorchSum.mean(absmax)
            let centred = absmax.map { $0 - offset }
            let groups = (blocks + DynamicQuantizer.blockSize - 1) / DynamicQuantizer.blockSize
            var nested = [Float](repeating: 0, count: groups)
            var scaleCodes = [UInt8](repeating: 0, count: blocks)
            DynamicQuantizer.signed.quantize(centred, count: blocks, codes: &scaleCodes, absmax: &nested)
            // Weights are coded against the exact absmax: bitsandbytes quantizes before compressing it.
            let codes = encode(values, config: config, scales: absmax, mode: LQ_ENCODE_BITSANDBYTES)
            return QuantizedMatrix(config: config, rows: rows, cols: cols, codes: codes, scaleCodes: scaleCodes,
                                   groupAbsmax: nested, scaleOffset: offset)

        case let .uint(scaleBits, groupSize, dtype):
            let (scales, scaleCodes, groupAbsmax, offset) = uintScales(absmax: absmax, scaleBits: scaleBits, groupSize: groupSize, dtype: dtype)
            let codes = encode(values, config: config, scales: scales, mode: LQ_ENCODE_DIVIDE)
            return QuantizedMatrix(config: config, rows: rows, cols: cols, codes: codes, scaleCodes: scaleCodes,
                                   groupAbsmax: groupAbsmax, scaleOffset: offset)
        }
    }

    /// LQ-LoRA's double quantization of block absmaxes: offset = min(absmax); the group absmax of
    /// (absmax − offset) stored as dtype; q = clamp(round(v · (2^b − 1)/g), 0, 2^b − 1)
    /// (pytorch-quantization's tensor_quant); each block's scale as the decoder rebuilds it.
    public static func uintScales(absmax: [Float], scaleBits: Int, groupSize: Int, dtype: ScaleDType)
        -> (scales: [Float], codes: [UInt8], groupAbsmax: [Float], offset: Float) {
        let blocks = absmax.count
        let offset = absmax.min() ?? 0
        let centred = absmax.map { $0 - offset }
        let groups = (blocks + groupSize - 1) / groupSize
        var groupAbsmax = [Float](repeating: 0, count: groups)
        centred.withUnsafeBufferPointer { c in
            groupAbsmax.withUnsafeMutableBufferPointer { lq_blockwise_absmax(c.baseAddress, Int64(blocks), Int32(groupSize), $0.baseAddress) }
        }
        groupAbsmax = groupAbsmax.map { roundToStorage($0, dtype) }
        let maxQ = Float((1 << scaleBits) - 1)
        var scaleCodes = [UInt8](repeating: 0, count: lq_packed_bytes(Int32(scaleBits), Int64(blocks)))
        var scales = [Float](repeating: 0, count: blocks)
        for b in 0..<blocks {
            let g = groupAbsmax[b / groupSize]
            let step = maxQ / g
            var q: Float = 0
            if g > 0x1p-24 { q = min(max((centred[b] * step).rounded(.toNearestOrEven), 0), maxQ) }
            lq_put_code(&scaleCodes, Int32(scaleBits), Int64(b), UInt32(q))
            scales[b] = (g > 0x1p-24 ? q / step : 0) + offset
        }
        return (scales, scaleCodes, groupAbsmax, offset)
    }

    /// Per-block absmax of `values` in blocks of `blockSize`, in parallel.
    public static func blockAbsmax(_ values: UnsafeBufferPointer<Float>, blockSize bs: Int) -> [Float] {
        let n = values.count, blocks = (n + bs - 1) / bs
        var absmax = [Float](repeating: 0, count: blocks)
        absmax.withUnsafeMutableBufferPointer { a in
            let ap = a.baseAddress!
            Parallel.forEach(blocks, minChunk: 1024) { r in
                let lo = r.lowerBound * bs, hi = min(r.upperBound * bs, n)
                lq_blockwise_absmax(values.baseAddress! + lo, Int64(hi - lo), Int32(bs), ap + r.lowerBound)
            }
        }
        return absmax
    }

    /// A value as its scale storage type would hold it (round to nearest even), back in fp32.
    static func roundToStorage(_ v: Float, _ dtype: ScaleDType) -> Float {
        switch dtype {
        case .fp32: return v
        case .bf16: return lq_bf16_to_f32_ref(lq_f32_to_bf16_ref(v))
        case .fp16: return lq_f16_to_f32_ref(lq_f32_to_f16_ref(v))
        }
    }

    /// Codes for every value against per-block scales, in parallel over whole blocks. Slots past
    /// the last value (an odd count at 4 bits, say) hold the code of 0, as bitsandbytes pads.
    static func encode(_ values: UnsafeBufferPointer<Float>, config: QuantConfig, scales: [Float], mode: lq_encode_mode) -> [UInt8] {
        let n = values.count, bs = config.blockSize
        let blocks = (n + bs - 1) / bs
        let bits = Int32(config.bits)
        var codes = [UInt8](repeating: 0, count: lq_packed_bytes(bits, Int64(n)))
        let codebook = NormalFloat.codebook(bits: config.bits)
        let mid = NormalFloat.midpoints(codebook)
        let nCodes = Int32(1 << config.bits)
        let zero = UInt32(codebook.firstIndex(of: 0)!)
        codes.withUnsafeMutableBufferPointer { out in
            let op = out.baseAddress!
            scales.withUnsafeBufferPointer { s in
                mid.withUnsafeBufferPointer { m in
                    Parallel.forEach(blocks, minChunk: 256) { r in
                        let lo = r.lowerBound * bs, hi = min(r.upperBound * bs, n)
                        lq_encode_blocks(values.baseAddress, Int64(n), Int64(lo), Int64(hi - lo), Int32(bs), s.baseAddress,
                                         mode, m.baseAddress, nCodes, bits, op)
                    }
                }
                let slots = out.count * 8 / config.bits
                for i in n..<max(n, slots) { lq_put_code(op, bits, Int64(i), zero) }
            }
        }
        return codes
    }
}
