import CKernels
import Foundation
import LQTensor

/// One tensor's header entry. `dataRange` is relative to the start of the data buffer.
public struct TensorEntry: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let dataRange: Range<Int>

    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { dataRange.count }
}

/// A safetensors file, memory-mapped and validated as the reference implementation does
/// (huggingface/safetensors `tensor.rs`). Tensors are exposed lazily, without copying.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The reference implementation's limit on the header length.
    public static let maxHeaderLength: UInt64 = 100_000_000

    public let path: String
    /// Entries in data order.
    public let entries: [TensorEntry]
    public let metadata: [String: String]?
    /// Tensor names the header gives more than once: the last entry of each is used, as the
    /// safetensors library does (a warning names them).
    public let duplicateNames: [String]
    /// Byte offset of the data buffer in the file (8 + header length).
    public let dataStart: Int
    public let mapping: MappedFile
    private let byName: [String: Int]

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        let file = mapping.bytes
        let size = file.count
        guard size >= 8 else { throw SafeTensorsError.fileTooSmall(path: path, size: size) }
        let n = file.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n <= Self.maxHeaderLength else { throw SafeTensorsError.headerTooLarge(path: path, length: n) }
        guard 8 + Int(n) <= size else { throw SafeTensorsError.headerPastEnd(path: path, length: n, fileSize: size) }
        dataStart = 8 + Int(n)
        let header = UnsafeRawBufferPointer(rebasing: file[8..<dataStart])
        (entries, metadata) = try Self.parseHeader(header, path: path, bufferSize: size - dataStart)
        duplicateNames = Self.duplicateKeys(header)
        for name in duplicateNames {
            WarnOnce.say("warning: \(path): tensor '\(name)' is given more than once in the header; the last entry is used")
        }
        var index = [String: Int]()
        for (i, e) in entries.enumerated() { index[e.name] = i }
        byName = index
    }

    /// Parses and validates a header; `bufferSize` is the number of bytes after it.
    static func parseHeader(_ header: UnsafeRawBufferPointer, path: String, bufferSize: Int) throws
        -> ([TensorEntry], [String: String]?)
    {
        guard String(validating: header, as: UTF8.self) != nil else { throw SafeTensorsError.headerNotUTF8(path: path) }
        // The reference does not (yet) insist on '{' first: leading JSON whitespace is accepted.
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(header), options: [])
        } catch {
            throw SafeTensorsError.headerNotJSON(path: path)
        }
        guard let top = json as? [String: Any] else {
            throw SafeTensorsError.headerShape(path: path, detail: "the top level is not an object")
        }
        var metadata: [String: String]?
        var entries: [TensorEntry] = []
        for (name, value) in top {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafeTensorsError.metadataNotStrings(path: path, key: "__metadata__")
                }
                var strings = [String: String]()
                for (k, v) in map {
                    guard let s = v as? String else { throw SafeTensorsError.metadataNotStrings(path: path, key: k) }
                    strings[k] = s
                }
                metadata = strings
                continue
            }
            entries.append(try parseEntry(name: name, value: value, path: path))
        }
        // Offsets, sorted, must run back to back from 0 to the end of the buffer.
        entries.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound, $0.name) < ($1.dataRange.lowerBound, $1.dataRange.upperBound, $1.name) }
        var expectedStart = 0
        for e in entries {
            if e.dataRange.lowerBound != expectedStart { throw SafeTensorsError.badOffsets(path: path, tensor: e.name) }
            let (bits, overflow) = e.count.multipliedReportingOverflow(by: e.dtype.bitSize)
            if overflow { throw SafeTensorsError.sizeOverflow(path: path, tensor: e.name) }
            if bits % 8 != 0 { throw SafeTensorsError.notWholeBytes(path: path, tensor: e.name) }
            let needed = bits / 8
            if needed != e.byteCount {
                throw SafeTensorsError.sizeMismatch(path: path, tensor: e.name, expected: needed, actual: e.byteCount)
            }
            expectedStart = e.dataRange.upperBound
        }
        if expectedStart != bufferSize {
            throw SafeTensorsError.bufferNotCovered(path: path, covered: expectedStart, buffer: bufferSize)
        }
        return (entries, metadata)
    }

    /// The keys of the header's top-level object that occur more than once (JSONSerialization keeps
    /// the last silently). Called on a header that parsed, so strings and brackets are balanced.
    static func duplicateKeys(_ header: UnsafeRawBufferPointer) -> [String] {
        var seen: [String: Int] = [:], order: [String] = []
        var depth = 0, expectKey = false, i = 0
        let n = header.count
        while i < n {
            let c = header[i]
            if c == UInt8(ascii: "\"") {
                var j = i + 1
                while j < n && header[j] != UInt8(ascii: "\"") { j += header[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectKey, j < n,
                   let key = try? JSONSerialization.jsonObject(with: Data(UnsafeRawBufferPointer(rebasing: header[i...j])), options: .fragmentsAllowed) as? String {
                    seen[key, default: 0] += 1
                    if seen[key] == 2 { order.append(key) }
                }
                expectKey = false
                i = j + 1
                continue
            }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectKey = c == UInt8(ascii: "{") && depth == 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ","): if depth == 1 { expectKey = true }
            default: break
            }
            i += 1
        }
        return order
    }

    private static func parseEntry(name: String, value: Any, path: String) throws -> TensorEntry {
        func shapeError(_ what: String) -> SafeTensorsError {
            .headerShape(path: path, detail: "tensor '\(name)': \(what)")
        }
        guard let info = value as? [String: Any] else { throw shapeError("entry is not an object") }
        guard let dtypeName = info["dtype"] as? String else { throw shapeError("missing or non-string 'dtype'") }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard let shapeValues = info["shape"] as? [Any] else { throw shapeError("missing or non-array 'shape'") }
        var shape: [Int] = []
        for v in shapeValues {
            guard let d = exactNonNegativeInt(v) else { throw shapeError("'shape' holds \(v), not a non-negative integer") }
            shape.append(d)
        }
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { throw SafeTensorsError.sizeOverflow(path: path, tensor: name) }
            count = p
        }
        guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
              let begin = exactNonNegativeInt(offsets[0]), let end = exactNonNegativeInt(offsets[1])
        else { throw shapeError("'data_offsets' must be two non-negative integers") }
        if end < begin { throw SafeTensorsError.badOffsets(path: path, tensor: name) }
        return TensorEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    /// JSON numbers arrive as NSNumber; accept only exact non-negative integers (not 1.5, not true).
    private static func exactNonNegativeInt(_ v: Any) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        // objCType tells integers ("q", "i", ...) from doubles ("d") and booleans ("c").
        switch String(cString: n.objCType) {
        case "q", "l", "i", "s", "Q", "L", "I", "S":
            let i = n.int64Value
            return i >= 0 ? Int(i) : nil
        default:
            return nil
        }
    }

    public var tensorNames: [String] { entries.map(\.name) }

    public func entry(_ name: String) throws -> TensorEntry {
        guard let i = byName[name] else { throw SafeTensorsError.tensorNotFound(path: path, tensor: name) }
        return entries[i]
    }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    /// The raw bytes of a tensor, in place in the mapping.
    /// Drops the entry's pages from memory once its data has been copied (see MappedFile.release).
    public func release(_ entry: TensorEntry) {
        mapping.release((dataStart + entry.dataRange.lowerBound)..<(dataStart + entry.dataRange.upperBound))
    }

    public func bytes(of entry: TensorEntry) -> UnsafeRawBufferPointer {
        let start = dataStart + entry.dataRange.lowerBound
        return UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + entry.byteCount)])
    }

    /// A tensor's values as fp32. An aligned F32 tensor is a view of the mapping (no copy);
    /// other dtypes are converted into a new buffer.
    public func floatTensor(_ name: String) throws -> Tensor {
        try floatTensor(entry(name))
    }

    public func floatTensor(_ e: TensorEntry) throws -> Tensor {
        guard e.dtype.isSupported else {
            throw SafeTensorsError.unsupportedDType(path: path, tensor: e.name, dtype: e.dtype.rawValue)
        }
        let raw = bytes(of: e)
        if e.dtype == .f32, let base = raw.baseAddress, Int(bitPattern: base) % 4 == 0 {
            let storage = TensorStorage(wrapping: UnsafeMutableRawPointer(mutating: base), byteCount: raw.count, owner: mapping)
            return Tensor(shape: e.shape, storage: storage)
        }
        let out = Tensor(zeros: e.shape)
        DTypeConversion.toFloat32(raw, dtype: e.dtype, into: out.buffer)
        return out
    }
}

extension SafeTensorsFile {
    /// A 2-D BF16 or F16 tensor as stored: a view of the mapping when 2-byte aligned (else a copy).
    /// nil for other dtypes or ranks.
    public func halfMatrix(_ e: TensorEntry) -> HalfMatrix? {
        guard e.shape.count == 2, e.dtype == .bf16 || e.dtype == .f16 else { return nil }
        let kind: HalfMatrix.Kind = e.dtype == .bf16 ? .bf16 : .f16
        let raw = bytes(of: e)
        if let base = raw.baseAddress, Int(bitPattern: base) % 2 == 0 {
            let storage = TensorStorage(wrapping: UnsafeMutableRawPointer(mutating: base), byteCount: raw.count, owner: mapping)
            return HalfMatrix(kind: kind, rows: e.shape[0], cols: e.shape[1], storage: storage)
        }
        return HalfMatrix(kind: kind, rows: e.shape[0], cols: e.shape[1], copying: raw)
    }
}

/// Conversions between stored element types and fp32.
public enum DTypeConversion {
    /// Decodes `raw` (elements of `dtype`, any alignment) into `out`.
    public static func toFloat32(_ raw: UnsafeRawBufferPointer, dtype: DType, into out: UnsafeMutableBufferPointer<Float>) {
        let n = out.count
        guard n > 0, let src = raw.baseAddress, let dst = out.baseAddress else { return }
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
        case .f16, .bf16:
            let convert = dtype == .f16 ? lq_f16_to_f32 : lq_bf16_to_f32
            if Int(bitPattern: src) % 2 == 0 {
                convert(src.assumingMemoryBound(to: UInt16.self), dst, n)
            } else {
                let aligned = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
                defer { aligned.deallocate() }
                UnsafeMutableRawPointer(aligned).copyMemory(from: src, byteCount: n * 2)
                convert(aligned, dst, n)
            }
        case .f64: for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64: for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32: for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i16: for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i8: for i in 0..<n { dst[i] = Float(raw.load(fromByteOffset: i, as: Int8.self)) }
        case .u8: for i in 0..<n { dst[i] = Float(raw[i]) }
        case .bool: for i in 0..<n { dst[i] = raw[i] != 0 ? 1 : 0 }
        default: preconditionFailure("\(dtype.rawValue) is not convertible; check isSupported first")
        }
    }

    /// Encodes fp32 values as `dtype` (F32, F16 or BF16, round to nearest even) into `raw`.
    public static func fromFloat32(_ values: UnsafeBufferPointer<Float>, dtype: DType, into raw: UnsafeMutableRawBufferPointer) {
        let n = values.count
        guard n > 0, let src = values.baseAddress, let dst = raw.baseAddress else { return }
        precondition(raw.count >= n * dtype.bitSize / 8, "output too small")
        switch dtype {
        case .f32: dst.copyMemory(from: src, byteCount: n * 4)
        case .f16: lq_f32_to_f16(src, dst.assumingMemoryBound(to: UInt16.self), n)
        case .bf16: lq_f32_to_bf16(src, dst.assumingMemoryBound(to: UInt16.self), n)
        default: preconditionFailure("fp32 can be encoded only as F32, F16 or BF16, not \(dtype.rawValue)")
        }
    }
}
