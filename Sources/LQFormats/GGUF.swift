import CKernels
import Foundation
import LQTensor

public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case notGGUF(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, at: Int)
    case badValueType(path: String, key: String, type: UInt32)
    case unsupportedTensorType(path: String, tensor: String, type: UInt32)
    case tensorOutOfBounds(path: String, tensor: String)
    case missingKey(path: String, key: String)
    case tensorNotFound(path: String, tensor: String)

    public var description: String {
        switch self {
        case let .notGGUF(path): return "\(path): not a GGUF file (no 'GGUF' magic)"
        case let .unsupportedVersion(path, v): return "\(path): GGUF version \(v) is not supported (2 and 3 are)"
        case let .truncated(path, at): return "\(path): file ends early (at byte \(at))"
        case let .badValueType(path, key, t): return "\(path): metadata '\(key)' has unknown value type \(t)"
        case let .unsupportedTensorType(path, tensor, t):
            return "\(path): tensor '\(tensor)' has GGML type \(GGMLType.name(t)), which lqlora cannot read (F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
        case let .tensorOutOfBounds(path, tensor): return "\(path): tensor '\(tensor)' lies outside the file"
        case let .missingKey(path, key): return "\(path): metadata key '\(key)' is missing"
        case let .tensorNotFound(path, tensor): return "\(path): no tensor named '\(tensor)'"
        }
    }
}

/// A GGUF metadata value.
public indirect enum GGUFValue: Equatable, Sendable {
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
}

/// GGML tensor types lqlora reads, with their block geometry.
public enum GGMLType: UInt32, Sendable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30

    /// (values per block, bytes per block)
    var block: (values: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q8_0: return (32, 34)
        }
    }

    static func name(_ raw: UInt32) -> String {
        let names: [UInt32: String] = [0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                                       10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"]
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
    public var count: Int { dims.reduce(1, *) }
    /// Row-major shape (outermost first), as PyTorch sees the tensor.
    public var shape: [Int] { dims.reversed() }
}

/// A GGUF file (v2/v3), memory-mapped: metadata, tensor infos, and tensors decoded to fp32.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    private let mapping: MappedFile
    private let byName: [String: Int]

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        var r = Reader(bytes: mapping.bytes, path: path)
        guard mapping.byteCount >= 4, try r.bytes(4) == Array("GGUF".utf8) else { throw GGUFError.notGGUF(path: path) }
        version = try r.u32()
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(path: path, version: version) }
        let tensorCount = try r.u64(), kvCount = try r.u64()
        var meta: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try r.string()
            meta[key] = try r.value(type: r.u32(), key: key)
        }
        metadata = meta
        var infos: [GGUFTensorInfo] = []
        for _ in 0..<tensorCount {
            let name = try r.string()
            let nDims = try r.u32()
            var dims: [Int] = []
            for _ in 0..<nDims { dims.append(Int(try r.u64())) }
            let type = try r.u32()
            let offset = Int(try r.u64())
            infos.append(GGUFTensorInfo(name: name, dims: dims, rawType: type, offset: offset))
        }
        tensors = infos
        alignment = meta["general.alignment"]?.int ?? 32
        dataStart = (r.position + alignment - 1) / alignment * alignment
        byName = Dictionary(infos.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
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
        guard n % per == 0 else { throw GGUFError.tensorOutOfBounds(path: path, tensor: info.name) }
        let byteCount = n / per * bytesPer
        let start = dataStart + info.offset
        guard start >= dataStart, start + byteCount <= mapping.byteCount else {
            throw GGUFError.tensorOutOfBounds(path: path, tensor: info.name)
        }
        let raw = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + byteCount)])
        let out = Tensor(zeros: info.shape)
        let dst = out.pointer
        switch type {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: raw.baseAddress!, byteCount: byteCount)
        case .f16: DTypeConversion.toFloat32(raw, dtype: .f16, into: out.buffer)
        case .bf16: DTypeConversion.toFloat32(raw, dtype: .bf16, into: out.buffer)
        case .q8_0:
            for b in 0..<(n / 32) {
                let base = b * 34
                let d = lq_f16_to_f32_ref(raw.loadUnaligned(fromByteOffset: base, as: UInt16.self))
                for j in 0..<32 { dst[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
            }
        case .q4_0, .q4_1:
            let hasMin = type == .q4_1
            for b in 0..<(n / 32) {
                let base = b * (hasMin ? 20 : 18)
                let d = lq_f16_to_f32_ref(raw.loadUnaligned(fromByteOffset: base, as: UInt16.self))
                let m = hasMin ? lq_f16_to_f32_ref(raw.loadUnaligned(fromByteOffset: base + 2, as: UInt16.self)) : 0
                let qs = base + (hasMin ? 4 : 2)
                for j in 0..<16 {
                    let byte = raw[qs + j]
                    // Low nibbles are the first 16 values of the block, high nibbles the last 16.
                    if hasMin {
                        dst[b * 32 + j] = Float(byte & 0xf) * d + m
                        dst[b * 32 + j + 16] = Float(byte >> 4) * d + m
                    } else {
                        dst[b * 32 + j] = Float(Int(byte & 0xf) - 8) * d
                        dst[b * 32 + j + 16] = Float(Int(byte >> 4) - 8) * d
                    }
                }
            }
        }
        return out
    }

    /// A little-endian cursor over the mapped bytes with bounds checks.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var position = 0

        mutating func need(_ n: Int) throws {
            if n < 0 || position + n > bytes.count { throw GGUFError.truncated(path: path, at: position) }
        }
        mutating func bytes(_ n: Int) throws -> [UInt8] {
            try need(n)
            defer { position += n }
            return Array(bytes[position..<(position + n)])
        }
        mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
            try need(MemoryLayout<T>.size)
            defer { position += MemoryLayout<T>.size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
        }
        mutating func u32() throws -> UInt32 { try load(UInt32.self) }
        mutating func u64() throws -> UInt64 { try load(UInt64.self) }
        mutating func string() throws -> String {
            let n = try u64()
            guard n <= UInt64(bytes.count) else { throw GGUFError.truncated(path: path, at: position) }
            return String(decoding: try self.bytes(Int(n)), as: UTF8.self)
        }
        mutating func value(type: UInt32, key: String) throws -> GGUFValue {
            switch type {
            case 0: return .uint(UInt64(try load(UInt8.self)))
            case 1: return .int(Int64(try load(Int8.self)))
            case 2: return .uint(UInt64(try load(UInt16.self)))
            case 3: return .int(Int64(try load(Int16.self)))
            case 4: return .uint(UInt64(try load(UInt32.self)))
            case 5: return .int(Int64(try load(Int32.self)))
            case 6: return .float(Double(Float(bitPattern: try load(UInt32.self))))
            case 7: return .bool(try load(UInt8.self) != 0)
            case 8: return .string(try string())
            case 9:
                let elementType = try u32()
                let count = try u64()
                guard count <= UInt64(bytes.count) else { throw GGUFError.truncated(path: path, at: position) }
                var out: [GGUFValue] = []
                out.reserveCapacity(Int(count))
                for _ in 0..<count { out.append(try value(type: elementType, key: key)) }
                return .array(out)
            case 10: return .uint(try load(UInt64.self))
            case 11: return .int(try load(Int64.self))
            case 12: return .float(Double(bitPattern: try load(UInt64.self)))
            default: throw GGUFError.badValueType(path: path, key: key, type: type)
            }
        }
    }
}
