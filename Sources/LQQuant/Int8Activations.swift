import CKernels
import LQTensor

/// Which products of a NormalFloat matrix take int8 activations, as llama.cpp pairs its 4-bit types
/// with Q8_0 (lq_q8.h: x quantized per block of 32 with an fp32 scale, the codebook held as int8,
/// integer dot products, the block scales applied per block). A decoding option; the exact path is
/// the reference and the default.
public enum ActivationPath: Sendable, Equatable {
    /// fp32 activations in every product.
    case exact
    /// int8 activations for products of at most `QuantizedMatrix.gemvRowLimit` rows (decoding);
    /// longer batches (a prompt) keep the exact panel GEMM.
    case int8Decode
    /// int8 activations for every product, batches too (to measure the path's cost, as `eval` does).
    case int8

    /// Whether a product of `rows` rows of x takes int8 activations.
    public func quantizes(rows: Int) -> Bool {
        switch self {
        case .exact: return false
        case .int8Decode: return rows <= QuantizedMatrix.gemvRowLimit
        case .int8: return true
        }
    }
}

extension NormalFloat {
    /// The int8 form of `codebook(bits:)` the int8-activation kernels multiply with
    /// (lq_q8_codebook_make: the scale of least mean squared error over the codes).
    public static func int8Codebook(bits: Int) -> lq_q8_codebook {
        guard let c = int8Codebooks[bits] else { preconditionFailure("no \(bits)-bit NormalFloat codebook") }
        return c
    }

    private static let int8Codebooks: [Int: lq_q8_codebook] = Dictionary(uniqueKeysWithValues: [2, 3, 4, 8].map { bits in
        var c = lq_q8_codebook()
        codebook(bits: bits).withUnsafeBufferPointer { lq_q8_codebook_make($0.baseAddress, Int32(bits), &c) }
        return (bits, c)
    })
}

extension QuantizedMatrix {
    /// Y = X̂ · Ŵᵀ for X [n, cols] → Y [n, rows] (row-major), each row of X quantized to int8 in blocks
    /// of 32 (lq_q8.h). Parallel over W's rows; every output is computed alone, so the result depends
    /// neither on the thread count nor on how many rows come together.
    public func int8Product(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                            level: lq_level = lq_active_level()) {
        guard n > 0 else { return }
        let blocks = Int(lq_q8_blocks(Int64(cols))), stride = Int(lq_q8_row_bytes(Int64(cols)))
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: n * stride)
        let d = UnsafeMutablePointer<Float>.allocate(capacity: n * blocks)
        defer { q.deallocate(); d.deallocate() }
        for i in 0..<n { lq_q8_quantize_level(level, Int32(config.bits), x + i * cols, Int64(cols), q + i * stride, d + i * blocks) }
        var quantized = lq_q8_rows(q: q, d: d, count: Int64(n))
        var codebook8 = NormalFloat.int8Codebook(bits: config.bits)
        withCView { t in
            withUnsafePointer(to: &quantized) { a in
                withUnsafePointer(to: &codebook8) { cb in
                    let (tp, ap, cp) = (UnsafeRawPointer(t), UnsafeRawPointer(a), UnsafeRawPointer(cb))
                    // As gemv: chunks of at least 64K multiply-adds.
                    Parallel.forEach(rows, minChunk: max(1, (1 << 16) / max(cols * n, 1))) { range in
                        lq_q8_gemv_level(level, tp.assumingMemoryBound(to: lq_qtensor.self), cp.assumingMemoryBound(to: lq_q8_codebook.self),
                                         Int64(cols), Int64(range.lowerBound), Int64(range.upperBound),
                                         ap.assumingMemoryBound(to: lq_q8_rows.self), y, Int64(rows))
                    }
                }
            }
        }
    }
}
