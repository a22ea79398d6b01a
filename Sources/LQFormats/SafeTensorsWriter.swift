import Foundation
import LQTensor

/// A tensor to be written. Its bytes are produced on demand by `fill`, one tensor at a time,
/// so a writer never holds more than the largest tensor in memory.
public struct PendingTensor {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let fill: (UnsafeMutableRawBufferPointer) throws -> Void

    public init(name: String, dtype: DType, shape: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.fill = fill
    }

    /// A tensor of fp32 values stored as `dtype` (F32, F16 or BF16).
    public init(name: String, tensor: Tensor, dtype: DType = .f32) {
        self.init(name: name, dtype: dtype, shape: tensor.shape) { raw in
            DTypeConversion.fromFloat32(UnsafeBufferPointer(tensor.buffer), dtype: dtype, into: raw)
        }
    }

    /// A tensor given as raw bytes already in `dtype`.
    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        self.init(name: name, dtype: dtype, shape: shape) { raw in
            bytes.withUnsafeBytes { raw.copyMemory(from: $0) }
        }
    }

    public var byteCount: Int {
        guard let n = dtype.byteCount(elements: shape.reduce(1, *)) else {
            preconditionFailure("tensor '\(name)': \(shape) of \(dtype.rawValue) is not a whole number of bytes")
        }
        return n
    }
}

/// Writes safetensors files byte for byte as the reference implementation does: tensors ordered
/// by dtype (the reference's declaration order, descending: wide types first, so each tensor is
/// aligned to its element size) then name; the
/// header padded with spaces to a multiple of 8; `__metadata__` `{"format": "pt"}`.
public enum SafeTensorsWriter {
    public static let defaultMetadata = ["format": "pt"]

    /// The reference order: by dtype descending, then name.
    public static func ordered(_ tensors: [PendingTensor]) -> [PendingTensor] {
        tensors.sorted { ($0.dtype.order, $1.name) > ($1.dtype.order, $0.name) }
    }

    /// Writes one file atomically.
    public static func write(_ tensors: [PendingTensor], to path: String,
                             metadata: [String: String] = defaultMetadata) throws {
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted {
            throw SafeTensorsError.duplicateTensor(path: path, tensor: t.name)
        }
        let order = ordered(tensors)
        let header = headerBytes(order, metadata: metadata)
        let out = try AtomicFileWriter(path: path)
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try out.write($0) }
        try out.write(header)
        for t in order {
            let n = t.byteCount
            if n == 0 { continue }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 64)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            try t.fill(buffer)
            try out.write(UnsafeRawBufferPointer(buffer))
        }
        try out.commit()
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    static func headerBytes(_ order: [PendingTensor], metadata: [String: String]) -> Data {
        var json = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for t in order {
            let end = offset + t.byteCount
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        json += parts.joined(separator: ",") + "}"
        var data = Data(json.utf8)
        let padding = (8 - data.count % 8) % 8
        data.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: padding))
        return data
    }

    /// A JSON string literal (RFC 8259 escaping).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Writes a model's tensors into a directory as Hugging Face does: one `model.safetensors`, or,
/// above `maxShardBytes`, shards `model-0000i-of-0000n.safetensors` filled greedily in the
/// given order plus `model.safetensors.index.json`.
public enum CheckpointWriter {
    public static let defaultMaxShardBytes = 5_000_000_000

    /// Returns the file names written.
    @discardableResult
    public static func write(_ tensors: [PendingTensor], toDirectory dir: String,
                             maxShardBytes: Int = defaultMaxShardBytes,
                             metadata: [String: String] = SafeTensorsWriter.defaultMetadata) throws -> [String] {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let total = tensors.reduce(0) { $0 + $1.byteCount }
        if total <= maxShardBytes {
            try SafeTensorsWriter.write(tensors, to: dir + "/model.safetensors", metadata: metadata)
            return ["model.safetensors"]
        }
        var shards: [[PendingTensor]] = [[]]
        var current = 0
        for t in tensors {
            if current + t.byteCount > maxShardBytes && !shards[shards.count - 1].isEmpty {
                shards.append([])
                current = 0
            }
            shards[shards.count - 1].append(t)
            current += t.byteCount
        }
        var weightMap: [String: String] = [:]
        var names: [String] = []
        for (i, shard) in shards.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try SafeTensorsWriter.write(shard, to: dir + "/" + name, metadata: metadata)
            for t in shard { weightMap[t.name] = name }
            names.append(name)
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.writeAtomically(to: dir + "/" + Checkpoint.indexFileName)
        return names + [Checkpoint.indexFileName]
    }
}
