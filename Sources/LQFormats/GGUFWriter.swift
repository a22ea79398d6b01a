import Foundation

/// A metadata value as GGUF types it (the reader's `GGUFValue` forgets the width; a writer must not).
public enum GGUFMetadata: Equatable, Sendable {
    case u32(UInt32)
    case i32(Int32)
    case f32(Float)
    case bool(Bool)
    case string(String)
    case strings([String])
    case i32s([Int32])
    case f32s([Float])

    /// GGUF's value type code (gguf.h): 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array.
    var typeCode: UInt32 {
        switch self {
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string: return 8
        case .strings, .i32s, .f32s: return 9
        }
    }

    /// The value as the reader returns it, for comparing a written file with what was meant.
    public var readBack: GGUFValue {
        switch self {
        case let .u32(v): return .uint(UInt64(v))
        case let .i32(v): return .int(Int64(v))
        case let .f32(v): return .float(Double(v))
        case let .bool(v): return .bool(v)
        case let .string(v): return .string(v)
        case let .strings(v): return .array(v.map { .string($0) })
        case let .i32s(v): return .array(v.map { .int(Int64($0)) })
        case let .f32s(v): return .array(v.map { .float(Double($0)) })
        }
    }
}

/// One tensor to write: its row-major shape (outermost first, as PyTorch sees it), its GGML type,
/// and a closure that fills exactly its bytes when the writer reaches it.
public struct GGUFTensorSpec {
    public let name: String
    public let shape: [Int]
    public let type: GGMLType
    public let fill: (UnsafeMutableRawBufferPointer) throws -> Void

    public init(name: String, shape: [Int], type: GGMLType, fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        self.name = name
        self.shape = shape
        self.type = type
        self.fill = fill
    }

    public var byteCount: Int { GGMLBlocks.byteCount(type, values: shape.reduce(1, *)) }
}

public enum GGUFWriteError: Error, CustomStringConvertible, Equatable {
    case notWholeBlocks(path: String, tensor: String, type: String, columns: Int)

    public var description: String {
        switch self {
        case let .notWholeBlocks(path, tensor, type, columns):
            return "\(path): tensor '\(tensor)' has \(columns) columns, not a whole number of \(type) blocks"
        }
    }
}

/// Writes a GGUF v3 file (gguf.h; what gguf-py's GGUFWriter writes): header, metadata in the given
/// order, tensor infos, then each tensor's data at the next multiple of `alignment`, produced one
/// tensor at a time by its `fill`, so a model is never held whole. The file is written through
/// a temporary sibling and renamed into place when complete (AtomicFileWriter): a failed or
/// killed write leaves no partial file (its temporary sibling, hidden, is removed by the next write).
public enum GGUFWriter {
    public static let defaultAlignment = 32

    public static func write(metadata: [(key: String, value: GGUFMetadata)], tensors: [GGUFTensorSpec],
                             alignment: Int = defaultAlignment, to path: String) throws {
        for t in tensors where (t.shape.last ?? 1) % t.type.block.values != 0 {
            throw GGUFWriteError.notWholeBlocks(path: path, tensor: t.name, type: t.type.name, columns: t.shape.last ?? 1)
        }
        var header = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) } }
        func string(_ s: String) {
            let bytes = Array(s.utf8)
            u64(UInt64(bytes.count))
            header.append(contentsOf: bytes)
        }
        header.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        var kv = metadata
        if alignment != defaultAlignment { kv.append((key: "general.alignment", value: .u32(UInt32(alignment)))) }
        u64(UInt64(kv.count))
        for (key, value) in kv {
            string(key)
            u32(value.typeCode)
            switch value {
            case let .u32(v): u32(v)
            case let .i32(v): u32(UInt32(bitPattern: v))
            case let .f32(v): u32(v.bitPattern)
            case let .bool(v): header.append(v ? 1 : 0)
            case let .string(v): string(v)
            case let .strings(a):
                u32(8)
                u64(UInt64(a.count))
                for s in a { string(s) }
            case let .i32s(a):
                u32(5)
                u64(UInt64(a.count))
                for v in a { u32(UInt32(bitPattern: v)) }
            case let .f32s(a):
                u32(6)
                u64(UInt64(a.count))
                for v in a { u32(v.bitPattern) }
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }  // ne0 (columns) first
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += padded(t.byteCount, alignment)
        }
        header.append(contentsOf: [UInt8](repeating: 0, count: padded(header.count, alignment) - header.count))

        AtomicFileWriter.removeStale(for: path)
        let file = try AtomicFileWriter(path: path)
        try file.write(header)
        for t in tensors {
            let n = t.byteCount, total = padded(n, alignment)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 64)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            try t.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[0..<total]))
        }
        try file.commit()
    }

    static func padded(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}
