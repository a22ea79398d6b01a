import CBLAS
import CKernels
import Foundation
import LQTensor

public enum QuantError: Error, CustomStringConvertible, Equatable {
    case nonFinite(tensor: String, index: Int, value: Float)
    case notDivisible(tensor: String, count: Int, multiple: Int, config: String)
    case invalidConfig(String)
    case notAMatrix(tensor: String, shape: [Int])

    public var description: String {
        switch self {
        case let .nonFinite(tensor, index, value):
            return "tensor '\(tensor)' holds \(value) at flat index \(index); quantization needs finite weights"
        case let .notDivisible(tensor, count, multiple, config):
            return "tensor '\(tensor)' has \(count) values, not a multiple of \(multiple) as \(config) needs"
        case let .invalidConfig(name):
            return "unsupported quantization configuration \(name)"
        case let .notAMatrix(tensor, shape):
            return "tensor '\(tensor)' has shape \(shape); quantization needs a matrix"
        }
    }
}

/// A matrix in one of the NormalFloat formats: packed codes plus its scale storage. It computes
/// with the C kernels directly (dequantize, fused GEMV, panel GEMM) and never keeps an fp32 copy.
public final class QuantizedMatrix: DeviceResident, @unchecked Sendable {
    public let config: QuantConfig
    public let rows: Int
    public let cols: Int
    /// Packed codes (layout in lq_quant.h).
    public let codes: [UInt8]
    public let codebook: [Float]
    /// `.fp32` scales: one absmax per block.
    public let absmax: [Float]
    /// Double-quantized scales: one code per block (packed for `.uint`).
    public let scaleCodes: [UInt8]
    /// Double-quantized scales: one absmax per group of blocks, as fp32 (already rounded to its storage dtype).
    public let groupAbsmax: [Float]
    public let scaleOffset: Float

    /// Its copy on the GPU, when products run there (CUDABackend.active).
    let deviceCopy = DeviceCopy()

    /// Which CPU products quantize x to int8 (`ActivationPath`); set after loading, before products run.
    public var activations: ActivationPath = .exact
    /// τ of the int8 path's outlier residual (`ActivationPath.outlierRatio`; +inf: plain Q8_0).
    public var outlierRatio: Float = ActivationPath.outlierRatio

    public var count: Int { rows * cols }
    public var blockCount: Int { (count + config.blockSize - 1) / config.blockSize }

    public init(config: QuantConfig, rows: Int, cols: Int, codes: [UInt8], absmax: [Float] = [],
                scaleCodes: [UInt8] = [], groupAbsmax: [Float] = [], scaleOffset: Float = 0) {
        self.config = config
        self.rows = rows
        self.cols = cols
        self.codes = codes
        codebook = NormalFloat.codebook(bits: config.bits)
        self.absmax = absmax
        self.scaleCodes = scaleCodes
        self.groupAbsmax = groupAbsmax
        self.scaleOffset = scaleOffset
        let n = rows * cols
        precondition(codes.count == lq_packed_bytes(Int32(config.bits), Int64(n)), "codes do not fit \(rows)x\(cols) at \(config.bits) bits")
    }

    /// Calls `body` with the C view of this matrix.
    public func withCView<R>(_ body: (UnsafePointer<lq_qtensor>) throws -> R) rethrows -> R {
        try codes.withUnsafeBufferPointer { c in
            try codebook.withUnsafeBufferPointer { cb in
                try absmax.withUnsafeBufferPointer { a in
                    try scaleCodes.withUnsafeBufferPointer { sc in
                        try bitsandbytesDynamicMap.withUnsafeBufferPointer { map in
                            try groupAbsmax.withUnsafeBufferPointer { g in
                                var t = lq_qtensor(format: config.cFormat, numel: Int64(count), codes: c.baseAddress,
                                                   codebook: cb.baseAddress, absmax: a.baseAddress,
                                                   scale_codes: sc.baseAddress, scale_map: map.baseAddress,
                                                   group_absmax: g.baseAddress, scale_offset: scaleOffset)
                                return try body(&t)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The fp32 absmax of every block, as the kernels see it.
    public func blockScales() -> [Float] {
        var out = [Float](repeating: 0, count: blockCount)
        withCView { t in out.withUnsafeMutableBufferPointer { lq_block_scales(t, 0, Int64(blockCount), $0.baseAddress) } }
        return out
    }

    /// Rows [range) dequantized into `out` (row-major, `range.count × cols`).
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>, level: lq_level = lq_active_level()) {
        withCView { t in lq_dequantize_level(level, t, Int64(range.lowerBound * cols), Int64(range.count * cols), out) }
    }

    /// The whole matrix as fp32 (parallel over row ranges).
    public func dequantize(level: lq_level = lq_active_level()) -> Tensor {
        let out = Tensor(zeros: [rows, cols])
        let base = out.pointer
        withCView { t in
            let tp = UnsafeRawPointer(t)
            // Chunks start on block boundaries so the SIMD path stays on its fast loop.
            let bs = config.blockSize
            let blocks = blockCount
            Parallel.forEach(blocks, minChunk: max(1, 16384 / bs)) { range in
                let start = range.lowerBound * bs, end = min(range.upperBound * bs, count)
                lq_dequantize_level(level, tp.assumingMemoryBound(to: lq_qtensor.self), Int64(start), Int64(end - start), base + start)
            }
        }
        return out
    }

    /// y = W · x for one vector (x: cols, y: rows), fused: W is decoded in registers. Parallel over rows.
    public func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, level: lq_level = lq_active_level()) {
        withCView { t in
            let tp = UnsafeRawPointer(t)
            // Chunks of at least 64K weights: the pool's spinning workers start within a microsecond,
            // so even a decoding step's 576×576 products split across cores.
            Parallel.forEach(rows, minChunk: max(1, (1 << 16) / max(cols, 1))) { range in
                lq_gemv_level(level, tp.assumingMemoryBound(to: lq_qtensor.self), Int64(cols),
                              Int64(range.lowerBound), Int64(range.upperBound), x, y)
            }
        }
    }

    /// Rows of x at or below this count go through the fused GEMV; more go through panel GEMM.
    public static let gemvRowLimit = RowPanels.gemvRowLimit

    /// X · Wᵀ for X [n, cols] → [n, rows], the product a linear layer computes. Few rows use the
    /// fused GEMV; many rows dequantize cache-sized panels of W (one thread each) feeding sgemm;
    /// rows that `activations` quantizes take the int8 kernel.
    /// `gpu`: the CUDA backend to run on (default: the process's active one; nil for the CPU).
    public func matmul(_ x: Tensor, gpu: CUDABackend? = CUDABackend.active) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == cols, "matmul: x \(x.shape) against W [\(rows), \(cols)]")
        let n = x.shape[0]
        let out = Tensor(uninitialized: [n, rows])  // every path below writes all of it
        if n > 0, let gpu, onDevice(gpu, { m in gpu.matmul(m, x: x.pointer, rows: n, transposed: false, beta: 0, y: out.pointer) }) {
            return out
        }
        if activations.quantizes(rows: n) {
            int8Product(x.pointer, rows: n, into: out.pointer, outlierRatio: outlierRatio)
            return out
        }
        if n <= Self.gemvRowLimit {
            for i in 0..<n { gemv(x.pointer + i * cols, out.pointer + i * rows) }
            return out
        }
        RowPanels.product(x, into: out, rows: rows, cols: cols) { range, panel in self.dequantize(rows: range, into: panel) }
        return out
    }

    /// dX += dY · W for dY [n, rows] and dX [n, cols]: the input gradient of a linear layer through
    /// this frozen weight, dequantized a cache-sized panel of rows at a time (never the whole matrix).
    public func accumulateTransposedProduct(_ dy: Tensor, into dx: Tensor, gpu: CUDABackend? = CUDABackend.active) {
        precondition(dy.rank == 2 && dy.shape[1] == rows && dx.shape == [dy.shape[0], cols],
                     "dY \(dy.shape) · W [\(rows), \(cols)] into \(dx.shape)")
        let n = dy.shape[0]
        if n > 0, let gpu, onDevice(gpu, { m in gpu.matmul(m, x: dy.pointer, rows: n, transposed: true, beta: 1, y: dx.pointer) }) {
            return
        }
        RowPanels.accumulateTransposedProduct(dy, into: dx, rows: rows, cols: cols) { range, panel in self.dequantize(rows: range, into: panel) }
    }

    func upload(to gpu: CUDABackend) -> (OpaquePointer?, String?) { withCView { gpu.upload($0, rows: rows, cols: cols) } }

    var deviceName: String { "a \(rows)x\(cols) \(config.name) matrix" }

    /// Bytes of storage (codes and scales as stored; group absmax at its storage width).
    public var storageBytes: Int {
        var bytes = codes.count + absmax.count * 4 + scaleCodes.count
        if config.scale.traits.layout == .doubleQuantized {
            bytes += groupAbsmax.count * config.scale.traits.dtype.bitCount / 8 + 4  // + the fp32 offset
        }
        return bytes
    }
}
