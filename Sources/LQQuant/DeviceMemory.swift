import CKernels
import LQTensor

/// A GPU call that failed: what was asked and the library's reason.
public struct CUDAFailure: Error, CustomStringConvertible {
    public let what: String
    public let reason: String
    public var description: String { "GPU \(what) failed: \(reason)" }
}

/// fp32 values in device memory, freed with their owner.
public final class DeviceFloats: @unchecked Sendable {
    public let gpu: CUDABackend
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(_ gpu: CUDABackend, count: Int) throws {
        var raw: UnsafeMutableRawPointer?
        try gpu.check(gpu.api.malloc!(&raw, max(count, 1) * MemoryLayout<Float>.stride), "allocation of \(count) floats")
        self.gpu = gpu
        pointer = raw!.assumingMemoryBound(to: Float.self)
        self.count = count
    }

    /// A device copy of `tensor`'s values.
    public convenience init(_ gpu: CUDABackend, copying tensor: Tensor) throws {
        try self.init(gpu, count: tensor.count)
        try upload(tensor.pointer, count: tensor.count)
    }

    /// A device copy of `values`.
    public convenience init(_ gpu: CUDABackend, copying values: [Float]) throws {
        try self.init(gpu, count: values.count)
        try values.withUnsafeBufferPointer { try upload($0.baseAddress!, count: $0.count) }
    }

    deinit { _ = gpu.api.free!(pointer) }

    public func upload(_ source: UnsafePointer<Float>, count: Int, at offset: Int = 0) throws {
        precondition(offset + count <= self.count, "upload past the end of a device buffer")
        try gpu.check(gpu.api.upload!(pointer + offset, source, count * MemoryLayout<Float>.stride), "upload")
    }

    public func download(into destination: UnsafeMutablePointer<Float>, count: Int, from offset: Int = 0) throws {
        precondition(offset + count <= self.count, "download past the end of a device buffer")
        try gpu.check(gpu.api.download!(destination, pointer + offset, count * MemoryLayout<Float>.stride), "download")
    }
}

/// The decoder's operations on device pointers (lq_cuda.h), throwing CUDAFailure.
extension CUDABackend {
    func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        if status != 0 { throw CUDAFailure(what: what(), reason: lastError) }
    }

    /// Y[n, rows] = alpha · X[n, cols] · Wᵀ + beta · Y for a dense W [rows, cols].
    public func denseProduct(_ w: UnsafePointer<Float>, rows: Int, cols: Int, x: UnsafePointer<Float>, n: Int,
                             alpha: Float = 1, beta: Float = 0, y: UnsafeMutablePointer<Float>) throws {
        try check(api.dense_matmul!(w, Int64(rows), Int64(cols), x, Int64(n), alpha, beta, y), "dense product [\(rows), \(cols)]")
    }

    /// Y[n, rows] = X[n, cols] · Wᵀ for a quantized W already on the device (`workspace`: rows·cols
    /// floats, used when n is above the fused GEMV's row limit).
    public func quantizedProduct(_ matrix: OpaquePointer, rows: Int, cols: Int, x: UnsafePointer<Float>, n: Int,
                                 workspace: UnsafeMutablePointer<Float>?, y: UnsafeMutablePointer<Float>) throws {
        if n <= Int(LQ_CUDA_GEMV_MAX_ROWS) {
            try check(api.gemv!(matrix, x, Int64(n), y), "quantized GEMV [\(rows), \(cols)]")
        } else {
            guard let workspace else { preconditionFailure("a quantized GEMM needs a workspace") }
            try check(api.gemm!(matrix, x, Int64(n), 0, 0, workspace, y), "quantized GEMM [\(rows), \(cols)]")
        }
    }

    public func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, width: Int, eps: Float,
                        into out: UnsafeMutablePointer<Float>) throws {
        try check(api.rms_norm!(x, weight, Int64(rows), Int64(width), eps, out), "RMSNorm")
    }

    /// x += y.
    public func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) throws {
        try check(api.add!(x, y, Int64(count)), "add")
    }

    public func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, width: Int) throws {
        try check(api.add_bias!(y, bias, Int64(rows), Int64(width)), "bias")
    }

    /// g ← silu(g) · u.
    public func siluMul(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count: Int) throws {
        try check(api.silu_mul!(g, u, Int64(count)), "SwiGLU")
    }

    /// out[i, :] = table[ids[i], :].
    public func gatherRows(_ table: UnsafePointer<Float>, width: Int, ids: [Int32], into out: UnsafeMutablePointer<Float>) throws {
        try check(api.gather_rows!(table, Int64(width), ids, Int64(ids.count), out), "embedding lookup")
    }

    public func rope(_ x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, batch: Int,
                     length: Int, start: Int, heads: Int, headDim: Int) throws {
        try check(api.rope!(x, cos, sin, Int64(batch), Int64(length), Int64(start), Int64(heads), Int64(headDim)), "RoPE")
    }

    public func attention(q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                          shape: lq_attention_shape, into out: UnsafeMutablePointer<Float>) throws {
        var s = shape
        try check(api.attention!(q, keys, values, &s, out), "attention")
    }

    /// −log softmax(logits[i, :])[targets[i]] for device logits [targets.count, vocab].
    public func tokenNLL(_ logits: UnsafePointer<Float>, vocab: Int, targets: [Int32]) throws -> [Double] {
        var out = [Double](repeating: 0, count: targets.count)
        try check(api.token_nll!(logits, Int64(targets.count), Int64(vocab), targets, &out), "token log-likelihoods")
        return out
    }

    /// Device-to-device copy of `count` floats.
    public func copy(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>, count: Int) throws {
        try check(api.copy!(destination, source, count * MemoryLayout<Float>.stride), "device copy")
    }
}

extension QuantizedMatrix {
    /// This matrix's device copy (uploaded on first use, shared with the per-product path).
    public func deviceMatrix(on gpu: CUDABackend) throws -> OpaquePointer { try residentMatrix(on: gpu) }
}

extension UniformQuantization {
    /// This matrix's device copy (uploaded on first use, shared with the per-product path).
    public func deviceMatrix(on gpu: CUDABackend) throws -> OpaquePointer { try residentMatrix(on: gpu) }
}
