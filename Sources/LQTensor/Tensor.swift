import Foundation

/// A block of memory that tensors view: owned (allocated here, 64-byte aligned) or
/// borrowed from another owner such as a memory-mapped file, which it keeps alive.
public final class TensorStorage: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: AnyObject?
    private let owned: Bool

    /// Allocates `byteCount` bytes, zeroed unless the caller will overwrite every one.
    public init(byteCount: Int, zeroed: Bool = true) {
        precondition(byteCount >= 0, "negative byte count")
        base = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        if zeroed { base.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1)) }
        self.byteCount = byteCount
        owner = nil
        owned = true
    }

    /// Wraps memory owned elsewhere; `owner` is retained for as long as this storage lives.
    public init(wrapping base: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject?) {
        self.base = base
        self.byteCount = byteCount
        self.owner = owner
        owned = false
    }

    deinit { if owned { base.deallocate() } }
}

/// A dense fp32 tensor in row-major order. A `Tensor` is a view: copies of the value share
/// storage (like a PyTorch tensor), `rows(_:)` and `reshaped(_:)` make views without copying,
/// and `copy()` makes an independent tensor.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: TensorStorage
    /// Offset of the first element in `storage`, in elements.
    public let offset: Int

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> {
        storage.base.assumingMemoryBound(to: Float.self) + offset
    }
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        storage = TensorStorage(byteCount: shape.reduce(1, *) * MemoryLayout<Float>.stride)
        offset = 0
    }

    /// A tensor whose contents are undefined: only for outputs that are written in full before
    /// they are read (a product with beta = 0), where zeroing would be wasted memory traffic.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        storage = TensorStorage(byteCount: shape.reduce(1, *) * MemoryLayout<Float>.stride, zeroed: false)
        offset = 0
    }

    /// A tensor holding a copy of `values`.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    /// A view of `storage` starting at element `offset`; no copy.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        let needed = (offset + shape.reduce(1, *)) * MemoryLayout<Float>.stride
        precondition(offset >= 0 && needed <= storage.byteCount, "view \(shape)+\(offset) exceeds its storage")
        precondition(Int(bitPattern: storage.base) % MemoryLayout<Float>.alignment == 0, "unaligned fp32 storage")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    /// A view with the same elements and another shape of equal size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage, offset: offset)
    }

    /// Rows `range` along the first dimension, as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) out of \(shape)")
        let rowSize = shape.dropFirst().reduce(1, *)
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, storage: storage, offset: offset + range.lowerBound * rowSize)
    }

    /// An independent copy.
    public func copy() -> Tensor {
        let out = Tensor(zeros: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }

    public var array: [Float] { Array(buffer) }

    public subscript(row: Int, col: Int) -> Float {
        get { pointer[row * shape[1] + col] }
        nonmutating set { pointer[row * shape[1] + col] = newValue }
    }

    /// The tensor as a matrix (rank 2 required).
    public var matrix: MatrixRef {
        precondition(rank == 2, "expected a matrix, got shape \(shape)")
        return MatrixRef(base: pointer, rows: shape[0], cols: shape[1], ld: shape[1])
    }

    /// A rectangular block of a matrix, as a strided view for BLAS/LAPACK.
    public func block(rows r: Range<Int>, cols c: Range<Int>) -> MatrixRef {
        matrix.block(rows: r, cols: c)
    }

    /// Frobenius norm, accumulated in double precision.
    public var frobeniusNorm: Double {
        var sum = 0.0
        for v in buffer { sum += Double(v) * Double(v) }
        return sum.squareRoot()
    }
}

/// A strided row-major matrix view: element (i, j) lives at `base[i * ld + j]`.
public struct MatrixRef: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let rows: Int
    public let cols: Int
    public let ld: Int

    public init(base: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int) {
        precondition(rows >= 0 && cols >= 0 && ld >= max(cols, 1), "bad matrix view \(rows)x\(cols) ld \(ld)")
        self.base = base
        self.rows = rows
        self.cols = cols
        self.ld = ld
    }

    public func block(rows r: Range<Int>, cols c: Range<Int>) -> MatrixRef {
        precondition(r.lowerBound >= 0 && r.upperBound <= rows && c.lowerBound >= 0 && c.upperBound <= cols,
                     "block \(r)x\(c) out of \(rows)x\(cols)")
        return MatrixRef(base: base + r.lowerBound * ld + c.lowerBound, rows: r.count, cols: c.count, ld: ld)
    }

    public subscript(i: Int, j: Int) -> Float {
        get { base[i * ld + j] }
        nonmutating set { base[i * ld + j] = newValue }
    }

    /// A contiguous copy.
    public func toTensor() -> Tensor {
        let t = Tensor(zeros: [rows, cols])
        for i in 0..<rows { (t.pointer + i * cols).update(from: base + i * ld, count: cols) }
        return t
    }
}

extension Tensor {
    /// The transpose of a matrix, as a new tensor.
    public func transposed() -> Tensor {
        precondition(rank == 2, "transpose expects a matrix")
        let m = shape[0], n = shape[1]
        let out = Tensor(zeros: [n, m])
        for i in 0..<m { for j in 0..<n { out.pointer[j * m + i] = pointer[i * n + j] } }
        return out
    }
}
