/// Why a safetensors file or checkpoint was rejected. Every case names the file, and the
/// tensor where there is one, so the user can find the fault.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case fileTooSmall(path: String, size: Int)
    case headerTooLarge(path: String, length: UInt64)
    case headerPastEnd(path: String, length: UInt64, fileSize: Int)
    case headerNotUTF8(path: String)
    case headerNotJSON(path: String)
    case headerShape(path: String, detail: String)
    case metadataNotStrings(path: String, key: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case sizeOverflow(path: String, tensor: String)
    case notWholeBytes(path: String, tensor: String)
    case sizeMismatch(path: String, tensor: String, expected: Int, actual: Int)
    case badOffsets(path: String, tensor: String)
    case bufferNotCovered(path: String, covered: Int, buffer: Int)
    case tensorNotFound(path: String, tensor: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case invalidIndex(path: String, detail: String)
    case shardMissing(path: String, shard: String, tensor: String)
    case tensorMissingFromShard(path: String, shard: String, tensor: String)
    case noCheckpoint(path: String)
    case duplicateTensor(path: String, tensor: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .fileTooSmall(path, size):
            return "\(path): file is \(size) bytes, shorter than the 8-byte header length"
        case let .headerTooLarge(path, length):
            return "\(path): header length \(length) exceeds the 100,000,000-byte limit"
        case let .headerPastEnd(path, length, fileSize):
            return "\(path): header length \(length) runs past the end of the \(fileSize)-byte file"
        case let .headerNotUTF8(path):
            return "\(path): header is not valid UTF-8"
        case let .headerNotJSON(path):
            return "\(path): header is not valid JSON"
        case let .headerShape(path, detail):
            return "\(path): header has an unexpected shape: \(detail)"
        case let .metadataNotStrings(path, key):
            return "\(path): __metadata__ must map strings to strings (key '\(key)')"
        case let .unknownDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case let .sizeOverflow(path, tensor):
            return "\(path): tensor '\(tensor)': shape × dtype size overflows"
        case let .notWholeBytes(path, tensor):
            return "\(path): tensor '\(tensor)' does not fill a whole number of bytes"
        case let .sizeMismatch(path, tensor, expected, actual):
            return "\(path): tensor '\(tensor)' needs \(expected) bytes but its data_offsets span \(actual)"
        case let .badOffsets(path, tensor):
            return "\(path): tensor '\(tensor)' has data_offsets that overlap, leave a gap, or run backwards"
        case let .bufferNotCovered(path, covered, buffer):
            return "\(path): tensors cover \(covered) bytes but the data buffer holds \(buffer)"
        case let .tensorNotFound(path, tensor):
            return "\(path): no tensor named '\(tensor)'"
        case let .unsupportedDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype), which lqlora cannot read as numbers"
        case let .invalidIndex(path, detail):
            return "\(path): invalid index: \(detail)"
        case let .shardMissing(path, shard, tensor):
            return "\(path): shard '\(shard)' (holding '\(tensor)') does not exist"
        case let .tensorMissingFromShard(path, shard, tensor):
            return "\(path): tensor '\(tensor)' is mapped to '\(shard)' but that shard does not contain it"
        case let .noCheckpoint(path):
            return "\(path): no model.safetensors or model.safetensors.index.json here"
        case let .duplicateTensor(path, tensor):
            return "\(path): tensor '\(tensor)' is given twice"
        case let .writeFailed(path, reason):
            return "\(path): cannot write: \(reason)"
        }
    }
}
