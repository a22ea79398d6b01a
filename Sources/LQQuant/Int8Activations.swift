import CKernels
import Foundation
import LQTensor

/// Which products of a NormalFloat matrix take int8 activations, as llama.cpp pairs its 4-bit types
/// with Q8_0 (lq_q8.h: x quantized per block of 32 with an fp32 scale, the codebook held as int8,
/// integer dot products, the block scales applied per block), with an int8 residual for the blocks
/// that hold an outlier (`outlierRatio`). The exact path is the reference, and the default here;
/// the CLI decodes with int8 by default (generate, rag ask) and evaluates exactly (eval).
public enum ActivationPath: Sendable, Equatable {
    /// fp32 activations in every product.
    case exact
    /// int8 activations for products of at most `QuantizedMatrix.gemvRowLimit` rows (decoding);
    /// longer batches (a prompt) keep the exact panel GEMM.
    case int8Decode
    /// int8 activations for every product, batches too (to measure the path's cost, as `eval` does).
    case int8

    /// The outlier rule of the int8 path (lq_q8.h, "residual"): a block of 32 whose scale exceeds this
    /// many times the mean of its row's block scales also carries the int8 residual of its rounding.
    /// LQLORA_Q8_TAU overrides it (to measure; "inf" turns the residual off, 0 gives every block one).
    public static let outlierRatio: Float = {
        if let v = ProcessInfo.processInfo.environment["LQLORA_Q8_TAU"], let t = Float(v), !t.isNaN { return t }
        return defaultOutlierRatio
    }()

    /// τ of `outlierRatio`: with τ = 2 NF4 SmolLM2-135M's WikiText-2 perplexity is 0.13 % below the exact
    /// path's, the int8 codebook's own cost (docs/BENCHMARKS.md, "The outlier residual").
    public static let defaultOutlierRatio: Float = 2

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
    /// of 32 (lq_q8.h), and the blocks that `outlierRatio` flags with their residual as well (+inf: plain
    /// Q8_0). Parallel over W's rows; every output is computed alone, so the result depends neither on
    /// the thread count nor on how many rows come together.
    public func int8Product(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                            level: lq_level = lq_active_level(), outlierRatio: Float = ActivationPath.outlierRatio) {
        guard n > 0 else { return }
        let blocks = Int(lq_q8_blocks(Int64(cols))), stride = Int(lq_q8_row_bytes(Int64(cols)))
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: 2 * n * stride)
        let d = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * blocks)
        defer { q.deallocate(); d.deallocate() }
        let (q2, d2) = (q + n * stride, d + n * blocks)  // the residual's halves
        var flagged: Int64 = 0
        for i in 0..<n {
            let (xi, qi, di) = (x + i * cols, q + i * stride, d + i * blocks)
            lq_q8_quantize_level(level, Int32(config.bits), xi, Int64(cols), qi, di)
            if outlierRatio != .infinity {
                flagged += lq_q8_quantize_residual(Int32(config.bits), xi, Int64(cols), outlierRatio, qi, di, q2 + i * stride, d2 + i * blocks)
            }
        }
        // Without a flagged block the kernels take plain Q8_0's path (the same result bit for bit).
        var quantized = lq_q8_rows(q: q, d: d, count: Int64(n), q2: flagged > 0 ? UnsafePointer(q2) : nil,
                                   d2: flagged > 0 ? UnsafePointer(d2) : nil)
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
