import Foundation
import LQTensor

/// What a safetensors header says of one tensor; with it alone a file's size is known before
/// any value exists (`SafeTensorsWriter.fileSize`).
public protocol TensorHeader {
    var name: String { get }
    var dtype: DType { get }
    var shape: [Int] { get }
}

extension TensorHeader {
    public var byteCount: Int {
        guard let n = dtype.byteCount(elements: shape.reduce(1, *)) else {
            preconditionFailure("tensor '\(name)': \(shape) of \(dtype.rawValue) is not a whole number of bytes")
        }
        return n
    }
}

/// A tensor known by its header alone: what a writer will store, sized before it is made.
public struct PlannedTensor: TensorHeader, Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A tensor to be written. Its bytes are produced on demand by `fill`, one tensor at a time,
/// so a writer never holds more than the largest tensor in memory.
public struct PendingTensor: TensorHeader {
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

    /// The planned tensor `header` with its values, which must be what it says.
    public init(_ header: PlannedTensor, tensor: Tensor) {
        precondition(tensor.shape == header.shape, "tensor '\(header.name)': values of shape \(tensor.shape) for \(header.shape)")
        self.init(name: header.name, tensor: tensor, dtype: header.dtype)
    }

    public init(_ header: PlannedTensor, values: [Float]) {
        self.init(header, tensor: Tensor(shape: header.shape, values: values))
    }

    public init(_ header: PlannedTensor, bytes: [UInt8]) {
        precondition(bytes.count == header.byteCount, "tensor '\(header.name)': \(bytes.count) bytes for \(header.byteCount)")
        self.init(name: header.name, dtype: header.dtype, shape: header.shape, bytes: bytes)
    }
}

/// Writes safetensors files byte for byte as the reference implementation does: tensors ordered
/// by dtype (the reference's declaration order, descending: wide types first, so each tensor is
/// aligned to its element size) then name; the
/// header padded with spaces to a multiple of 8; `__metadata__` `{"format": "pt"}`.
public enum SafeTensorsWriter {
    public static let defaultMetadata = ["format": "pt"]

    /// The reference order: by dtype descending, then name.
    public static func ordered<T: TensorHeader>(_ tensors: [T]) -> [T] {
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

    /// The size of the file `write` makes of these tensors: the 8-byte header length, the header
    /// and the data.
    public static func fileSize<T: TensorHeader>(_ tensors: [T], metadata: [String: String] = defaultMetadata) -> Int {
        8 + headerBytes(ordered(tensors), metadata: metadata).count + tensors.reduce(0) { $0 + $1.byteCount }
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    static func headerBytes<T: TensorHeader>(_ order: [T], metadata: [String: String]) -> Data {
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
        let files = shards(tensors, maxShardBytes: maxShardBytes)
        for f in files { try SafeTensorsWriter.write(f.tensors, to: dir + "/" + f.name, metadata: metadata) }
        guard files.count > 1 else { return files.map(\.name) }
        try index(files).writeAtomically(to: dir + "/" + Checkpoint.indexFileName)
        return files.map(\.name) + [Checkpoint.indexFileName]
    }

    /// The bytes `write` puts on disk for these tensors: every file's header and data, and the
    /// index of a sharded model.
    public static func writtenBytes<T: TensorHeader>(_ tensors: [T], maxShardBytes: Int = defaultMaxShardBytes,
                                                     metadata: [String: String] = SafeTensorsWriter.defaultMetadata) throws -> Int {
        let files = shards(tensors, maxShardBytes: maxShardBytes)
        let sizes = files.reduce(0) { $0 + SafeTensorsWriter.fileSize($1.tensors, metadata: metadata) }
        return files.count > 1 ? sizes + (try index(files).count) : sizes
    }

    /// The files of `write`, each with its tensors.
    static func shards<T: TensorHeader>(_ tensors: [T], maxShardBytes: Int) -> [(name: String, tensors: [T])] {
        if tensors.reduce(0, { $0 + $1.byteCount }) <= maxShardBytes { return [("model.safetensors", tensors)] }
        var shards: [[T]] = [[]]
        var current = 0
        for t in tensors {
            if current + t.byteCount > maxShardBytes && !shards[shards.count - 1].isEmpty {
                shards.append([])
                current = 0
            }
            shards[shards.count - 1].append(t)
            current += t.byteCount
        }
        return shards.enumerated().map { (String(format: "model-%05d-of-%05d.safetensors", $0.offset + 1, shards.count), $0.element) }
    }

    /// model.safetensors.index.json of sharded files.
    static func index<T: TensorHeader>(_ files: [(name: String, tensors: [T])]) throws -> Data {
        var weightMap: [String: String] = [:]
        for f in files { for t in f.tensors { weightMap[t.name] = f.name } }
        let total = files.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        return try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
