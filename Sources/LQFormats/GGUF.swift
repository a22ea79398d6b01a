import CKernels
import Foundation
import LQTensor

public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case notGGUF(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, at: Int)
    /// The file ends inside an entry (a metadata value, a tensor's description).
    case endsInside(path: String, at: Int, entry: String)
    case badValueType(path: String, key: String, type: UInt32)
    /// A count (of metadata entries, tensors, array values) that cannot fit in the bytes left.
    case countTooLarge(path: String, what: String, count: UInt64, limit: UInt64)
    case duplicateKey(path: String, key: String)
    case duplicateTensor(path: String, tensor: String)
    case badAlignment(path: String, detail: String)
    case badDimensions(path: String, tensor: String, detail: String)
    case sizeOverflow(path: String, tensor: String)
    case notWholeBlocks(path: String, tensor: String, rowLength: Int, blockSize: Int)
    case misaligned(path: String, tensor: String, offset: UInt64, alignment: Int)
    case overlapping(path: String, tensor: String, other: String)
    case unsupportedTensorType(path: String, tensor: String, type: UInt32)
    case tensorOutOfBounds(path: String, tensor: String)
    case missingKey(path: String, key: String)
    /// A metadata value the model cannot be built from (a head count of 0, a non-string token, ...).
    case badMetadata(path: String, key: String, detail: String)
    case tensorNotFound(path: String, tensor: String)
    case noTensors(path: String)
    case badTensorShape(path: String, tensor: String, expected: [Int], actual: [Int])
    case unexpectedTensor(path: String, tensor: String, detail: String)
    /// The vocabulary does not make a tokenizer (an empty added token, a merge of unknown tokens, ...).
    case badTokenizer(path: String, detail: String)

    public var description: String {
        switch self {
        case let .notGGUF(path): return "\(path): not a GGUF file (no 'GGUF' magic)"
        case let .unsupportedVersion(path, v): return "\(path): GGUF version \(v) is not supported (2 and 3 are)"
        case let .truncated(path, at): return "\(path): file ends early (at byte \(at))"
        case let .endsInside(path, at, entry): return "\(path): file ends early (at byte \(at)) inside \(entry)"
        case let .badValueType(path, key, t): return "\(path): metadata '\(key)' has unknown value type \(t)"
        case let .countTooLarge(path, what, count, limit):
            return "\(path): \(what) is \(count), more than the \(limit) that the rest of the file can hold"
        case let .duplicateKey(path, key): return "\(path): metadata key '\(key)' is given twice"
        case let .duplicateTensor(path, tensor): return "\(path): tensor '\(tensor)' is given twice"
        case let .badAlignment(path, detail): return "\(path): general.alignment \(detail)"
        case let .badDimensions(path, tensor, detail): return "\(path): tensor '\(tensor)' \(detail)"
        case let .sizeOverflow(path, tensor): return "\(path): tensor '\(tensor)': its dimensions' product or byte size overflows"
        case let .notWholeBlocks(path, tensor, rowLength, blockSize):
            return "\(path): tensor '\(tensor)' has rows of \(rowLength) values, not a multiple of its type's block of \(blockSize)"
        case let .misaligned(path, tensor, offset, alignment):
            return "\(path): tensor '\(tensor)' starts at data offset \(offset), not a multiple of the alignment \(alignment)"
        case let .overlapping(path, tensor, other): return "\(path): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .unsupportedTensorType(path, tensor, t):
            return "\(path): tensor '\(tensor)' has GGML type \(GGMLType.name(t)), which lqlora cannot read (\(GGMLType.readable))"
        case let .tensorOutOfBounds(path, tensor): return "\(path): tensor '\(tensor)' lies outside the file"
        case let .missingKey(path, key): return "\(path): metadata key '\(key)' is missing"
        case let .badMetadata(path, key, detail): return "\(path): metadata '\(key)' \(detail)"
        case let .tensorNotFound(path, tensor): return "\(path): no tensor named '\(tensor)'"
        case let .noTensors(path): return "\(path): the file holds no tensors"
        case let .badTensorShape(path, tensor, expected, actual):
            return "\(path): tensor '\(tensor)' has shape \(actual), but the metadata makes it \(expected)"
        case let .unexpectedTensor(path, tensor, detail): return "\(path): tensor '\(tensor)' \(detail)"
        case let .badTokenizer(path, detail): return "\(path): the vocabulary does not make a tokenizer: \(detail)"
        }
    }
}

/// A GGUF metadata value.
public indirect enum GGUFValue: Equatable, Sendable, CustomStringConvertible {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case let .uint(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .int(v): return Int(v)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case let .float(v): return v
        case let .uint(v): return Double(v)
        case let .int(v): return Double(v)
        default: return nil
        }
    }
    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    public var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var array: [GGUFValue]? { if case let .array(a) = self { return a } else { return nil } }

    /// As an error message shows it: the number, the quoted string, or an array's length.
    public var description: String {
        switch self {
        case let .uint(v): return "\(v)"
        case let .int(v): return "\(v)"
        case let .float(v): return "\(v)"
        case let .bool(b): return "\(b)"
        case let .string(s): return String(reflecting: s.count > 80 ? String(s.prefix(80)) + "…" : s)
        case let .array(a): return "an array of \(a.count) values"
        }
    }
}

/// GGML tensor types lqlora reads, with their block geometry (the quantized ones: GGMLBlocks).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, iq4_nl = 20, bf16 = 30

    /// (values per block, bytes per block)
    public var block: (values: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        default:
            let f = GGMLBlocks.format(self)!
            return (f.values, f.bytes)
        }
    }

    public var name: String { Self.name(rawValue) }

    /// The types lqlora reads, as an error lists them.
    static var readable: String { allCases.map(\.name).joined(separator: ", ") }

    static func name(_ raw: UInt32) -> String {
        let names: [UInt32: String] = [0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                                       10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
                                       16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
                                       22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"]
        return names[raw] ?? "type \(raw)"
    }
}

public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions innermost first, as GGUF stores them (ne0 = columns).
    public let dims: [Int]
    public let rawType: UInt32
    /// Offset from the start of the data section.
    public let offset: Int
    /// The number of values (checked against overflow when the file was read).
    public var count: Int { dims.reduce(1, *) }
    /// Row-major shape (outermost first), as PyTorch sees the tensor.
    public var shape: [Int] { dims.reversed() }
    /// The bytes of its data, for the types lqlora reads (checked when the file was read).
    public var byteCount: Int? { GGMLType(rawValue: rawType).map { count / $0.block.values * $0.block.bytes } }
}

/// A GGUF file (v2/v3), memory-mapped: metadata, tensor infos, and tensors decoded to fp32.
///
/// Every count, length, dimension and offset of the header is checked against what is left of the
/// file, with overflow-checked arithmetic, before anything is allocated (as llama.cpp's gguf.cpp
/// does): a file is refused by a `GGUFError` naming the key or tensor, never trapped on.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    private let mapping: MappedFile
    private let byName: [String: Int]

    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions: UInt32 = 4
    /// Arrays of arrays deeper than this are refused (llama.cpp reads none; gguf-py writes them).
    public static let maxArrayDepth = 4

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        var r = Reader(bytes: mapping.bytes, path: path)
        guard mapping.byteCount >= 4, try r.bytes(4) == Array("GGUF".utf8) else { throw GGUFError.notGGUF(path: path) }
        version = try r.u32()
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(path: path, version: version) }
        let tensorCount = try r.u64(), kvCount = try r.u64()
        // A metadata entry takes at least 13 bytes (key length, value type, a 1-byte value), a
        // tensor description 24 (name length, n_dims, type, offset).
        let rest = UInt64(r.remaining)
        guard kvCount <= rest / 13 else {
            throw GGUFError.countTooLarge(path: path, what: "the metadata entry count", count: kvCount, limit: rest / 13)
        }
        guard tensorCount <= (rest - kvCount * 13) / 24 else {
            throw GGUFError.countTooLarge(path: path, what: "the tensor count", count: tensorCount, limit: (rest - kvCount * 13) / 24)
        }
        var meta: [String: GGUFValue] = [:]
        for i in 0..<kvCount {
            let key = try r.string(entry: "metadata entry \(i)'s key")
            guard meta[key] == nil else { throw GGUFError.duplicateKey(path: path, key: key) }
            meta[key] = try r.value(type: r.u32(entry: "metadata '\(key)'"), key: key, depth: 0)
        }
        metadata = meta
        alignment = try Self.alignment(meta, path: path)
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(Int(tensorCount))
        var seen = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.string(entry: "tensor \(i)'s name")
            guard seen.insert(name).inserted else { throw GGUFError.duplicateTensor(path: path, tensor: name) }
            let entry = "tensor '\(name)'"
            let nDims = try r.u32(entry: entry)
            guard nDims <= Self.maxDimensions else {
                throw GGUFError.badDimensions(path: path, tensor: name, detail: "has \(nDims) dimensions (GGUF allows at most \(Self.maxDimensions))")
            }
            var dims: [Int] = []
            var count = 1
            for j in 0..<Int(nDims) {
                let d = try r.u64(entry: entry)
                guard d <= UInt64(Int64.max) else {
                    throw GGUFError.badDimensions(path: path, tensor: name, detail: "has dimension \(j) of \(d), above 2^63 - 1")
                }
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
                if overflow { throw GGUFError.sizeOverflow(path: path, tensor: name) }
                count = product
                dims.append(Int(d))
            }
            let type = try r.u32(entry: entry)
            let offset = try r.u64(entry: entry)
            guard offset % UInt64(alignment) == 0 else {
                throw GGUFError.misaligned(path: path, tensor: name, offset: offset, alignment: alignment)
            }
            if let known = GGMLType(rawValue: type) {
                let (per, bytesPer) = known.block
                let row = dims.first ?? 1
                guard row % per == 0 else { throw GGUFError.notWholeBlocks(path: path, tensor: name, rowLength: row, blockSize: per) }
                if (count / per).multipliedReportingOverflow(by: bytesPer).overflow { throw GGUFError.sizeOverflow(path: path, tensor: name) }
            }
            guard offset <= rest else { throw GGUFError.tensorOutOfBounds(path: path, tensor: name) }
            infos.append(GGUFTensorInfo(name: name, dims: dims, rawType: type, offset: Int(offset)))
        }
        tensors = infos
        // position ≤ file size and alignment ≤ 2^31: no overflow.
        dataStart = (r.position + alignment - 1) / alignment * alignment
        try Self.checkLayout(infos, dataStart: dataStart, fileSize: mapping.byteCount, path: path)
        byName = Dictionary(infos.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// `general.alignment`: a power of two that fits GGUF's uint32 (32 when absent).
    static func alignment(_ meta: [String: GGUFValue], path: String) throws -> Int {
        guard let value = meta["general.alignment"] else { return 32 }
        guard let a = value.int else { throw GGUFError.badAlignment(path: path, detail: "is \(value), not an integer") }
        guard a > 0, a <= 1 << 31, a & (a - 1) == 0 else {
            throw GGUFError.badAlignment(path: path, detail: "is \(a), not a power of two from 1 to 2^31")
        }
        return a
    }

    /// Every tensor of a known type inside the file, none overlapping another.
    static func checkLayout(_ infos: [GGUFTensorInfo], dataStart: Int, fileSize: Int, path: String) throws {
        let room = max(0, fileSize - dataStart)
        var spans: [(start: Int, end: Int, name: String)] = []
        for info in infos {
            guard info.offset <= room else { throw GGUFError.tensorOutOfBounds(path: path, tensor: info.name) }
            guard let bytes = info.byteCount else { continue }  // a type lqlora cannot read: refused when read
            guard bytes <= room - info.offset else { throw GGUFError.tensorOutOfBounds(path: path, tensor: info.name) }
            if bytes > 0 { spans.append((info.offset, info.offset + bytes, info.name)) }
        }
        spans.sort { ($0.start, $0.end) < ($1.start, $1.end) }
        for (a, b) in zip(spans, spans.dropFirst()) where b.start < a.end {
            throw GGUFError.overlapping(path: path, tensor: b.name, other: a.name)
        }
    }

    public func info(_ name: String) throws -> GGUFTensorInfo {
        guard let i = byName[name] else { throw GGUFError.tensorNotFound(path: path, tensor: name) }
        return tensors[i]
    }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    /// A tensor decoded to fp32, in row-major order with `info.shape`.
    public func floatTensor(_ info: GGUFTensorInfo) throws -> Tensor {
        guard let type = GGMLType(rawValue: info.rawType) else {
            throw GGUFError.unsupportedTensorType(path: path, tensor: info.name, type: info.rawType)
        }
        let n = info.count
        let (per, bytesPer) = type.block
        guard n % per == 0 else { throw GGUFError.notWholeBlocks(path: path, tensor: info.name, rowLength: info.dims.first ?? 1, blockSize: per) }
        let byteCount = n / per * bytesPer
        let start = dataStart + info.offset
        // Checked when the file was read; kept for infos made elsewhere.
        guard info.offset >= 0, info.offset <= mapping.byteCount - dataStart, byteCount <= mapping.byteCount - start else {
            throw GGUFError.tensorOutOfBounds(path: path, tensor: info.name)
        }
        let raw = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + byteCount)])
        let out = Tensor(zeros: info.shape)
        let dst = out.pointer
        switch type {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: raw.baseAddress!, byteCount: byteCount)
        case .f16: DTypeConversion.toFloat32(raw, dtype: .f16, into: out.buffer)
        case .bf16: DTypeConversion.toFloat32(raw, dtype: .bf16, into: out.buffer)
        default: GGMLBlocks.format(type)!.dequantize(raw.baseAddress!, dst, n / per)
        }
        return out
    }

    /// A little-endian cursor over the mapped bytes with bounds checks; `entry` names what is
    /// being read when the file ends inside it.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var position = 0

        var remaining: Int { bytes.count - position }

        mutating func need(_ n: Int, _ entry: String?) throws {
            guard n >= 0, n <= remaining else {
                if let entry { throw GGUFError.endsInside(path: path, at: position, entry: entry) }
                throw GGUFError.truncated(path: path, at: position)
            }
        }
        mutating func bytes(_ n: Int, entry: String? = nil) throws -> [UInt8] {
            try need(n, entry)
            defer { position += n }
            return Array(bytes[position..<(position + n)])
        }
        mutating func load<T: FixedWidthInteger>(_: T.Type, entry: String? = nil) throws -> T {
            try need(MemoryLayout<T>.size, entry)
            defer { position += MemoryLayout<T>.size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
        }
        mutating func u32(entry: String? = nil) throws -> UInt32 { try load(UInt32.self, entry: entry) }
        mutating func u64(entry: String? = nil) throws -> UInt64 { try load(UInt64.self, entry: entry) }
        mutating func string(entry: String) throws -> String {
            let n = try u64(entry: entry)
            guard n <= UInt64(remaining) else { throw GGUFError.endsInside(path: path, at: position, entry: entry + " (a string of \(n) bytes)") }
            return String(decoding: try self.bytes(Int(n), entry: entry), as: UTF8.self)
        }

        /// The fewest bytes a value of `type` takes; nil for an unknown type.
        static func minimumSize(_ type: UInt32) -> Int? {
            switch type {
            case 0, 1, 7: return 1
            case 2, 3: return 2
            case 4, 5, 6: return 4
            case 8, 10, 11, 12: return 8
            case 9: return 12
            default: return nil
            }
        }

        mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
            let entry = "metadata '\(key)'"
            switch type {
            case 0: return .uint(UInt64(try load(UInt8.self, entry: entry)))
            case 1: return .int(Int64(try load(Int8.self, entry: entry)))
            case 2: return .uint(UInt64(try load(UInt16.self, entry: entry)))
            case 3: return .int(Int64(try load(Int16.self, entry: entry)))
            case 4: return .uint(UInt64(try load(UInt32.self, entry: entry)))
            case 5: return .int(Int64(try load(Int32.self, entry: entry)))
            case 6: return .float(Double(Float(bitPattern: try load(UInt32.self, entry: entry))))
            case 7: return .bool(try load(UInt8.self, entry: entry) != 0)
            case 8: return .string(try string(entry: entry))
            case 9:
                let elementType = try u32(entry: entry)
                let count = try u64(entry: entry)
                guard let size = Self.minimumSize(elementType) else { throw GGUFError.badValueType(path: path, key: key, type: elementType) }
                if elementType == 9 && depth + 1 >= GGUFFile.maxArrayDepth {
                    throw GGUFError.badMetadata(path: path, key: key, detail: "nests arrays more than \(GGUFFile.maxArrayDepth) deep")
                }
                let limit = UInt64(remaining / size)
                guard count <= limit else {
                    throw GGUFError.countTooLarge(path: path, what: "the length of metadata '\(key)'", count: count, limit: limit)
                }
                var out: [GGUFValue] = []
                out.reserveCapacity(Int(count))
                for _ in 0..<count { out.append(try value(type: elementType, key: key, depth: depth + 1)) }
                return .array(out)
            case 10: return .uint(try load(UInt64.self, entry: entry))
            case 11: return .int(try load(Int64.self, entry: entry))
            case 12: return .float(Double(bitPattern: try load(UInt64.self, entry: entry)))
            default: throw GGUFError.badValueType(path: path, key: key, type: type)
            }
        }
    }
}
