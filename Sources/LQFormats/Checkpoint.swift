import Foundation
import LQTensor

/// A model's weights: one safetensors file, a directory with `model.safetensors`, or a sharded
/// directory with `model.safetensors.index.json`. All tensors are reachable by name; each shard
/// is memory-mapped once.
public final class Checkpoint: @unchecked Sendable {
    public static let indexFileName = "model.safetensors.index.json"

    /// The file or directory opened.
    public let path: String
    /// The directory holding config.json and the other model files.
    public let directory: String
    public let files: [SafeTensorsFile]
    /// Tensor name → index into `files`.
    private let location: [String: Int]
    /// Tensor names in a stable order (file order, then data order).
    public let tensorNames: [String]

    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw MappedFileError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if !isDir.boolValue {
            directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            let file = try SafeTensorsFile(path: path)
            files = [file]
            tensorNames = file.tensorNames
            location = Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, 0) })
            return
        }
        directory = path
        let indexPath = path + "/" + Self.indexFileName
        let singlePath = path + "/model.safetensors"
        if FileManager.default.fileExists(atPath: indexPath) {
            let weightMap = try Self.readWeightMap(indexPath)
            var shardOrder: [String] = []
            var byShard: [String: [String]] = [:]
            for (tensor, shard) in weightMap.sorted(by: { $0.key < $1.key }) {
                if byShard[shard] == nil { shardOrder.append(shard) }
                byShard[shard, default: []].append(tensor)
            }
            shardOrder.sort()
            var opened: [SafeTensorsFile] = []
            var loc: [String: Int] = [:]
            var names: [String] = []
            for shard in shardOrder {
                let shardPath = path + "/" + shard
                guard FileManager.default.fileExists(atPath: shardPath) else {
                    throw SafeTensorsError.shardMissing(path: indexPath, shard: shard, tensor: byShard[shard]![0])
                }
                let file = try SafeTensorsFile(path: shardPath)
                for tensor in byShard[shard]! where !file.contains(tensor) {
                    throw SafeTensorsError.tensorMissingFromShard(path: indexPath, shard: shard, tensor: tensor)
                }
                for name in file.tensorNames where weightMap[name] == shard {
                    loc[name] = opened.count
                    names.append(name)
                }
                opened.append(file)
            }
            files = opened
            location = loc
            tensorNames = names
        } else if FileManager.default.fileExists(atPath: singlePath) {
            let file = try SafeTensorsFile(path: singlePath)
            files = [file]
            tensorNames = file.tensorNames
            location = Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, 0) })
        } else {
            throw SafeTensorsError.noCheckpoint(path: path)
        }
    }

    private static func readWeightMap(_ indexPath: String) throws -> [String: String] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: indexPath)) } catch {
            throw SafeTensorsError.invalidIndex(path: indexPath, detail: "cannot read: \(error.localizedDescription)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SafeTensorsError.invalidIndex(path: indexPath, detail: "not a JSON object")
        }
        guard let map = json["weight_map"] as? [String: Any] else {
            throw SafeTensorsError.invalidIndex(path: indexPath, detail: "missing 'weight_map' object")
        }
        var out: [String: String] = [:]
        for (tensor, shard) in map {
            guard let s = shard as? String, !s.contains("/"), !s.isEmpty else {
                throw SafeTensorsError.invalidIndex(path: indexPath, detail: "tensor '\(tensor)' maps to \(shard), not a file name")
            }
            out[tensor] = s
        }
        return out
    }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The file holding `name` and its entry there.
    public func locate(_ name: String) throws -> (file: SafeTensorsFile, entry: TensorEntry) {
        guard let i = location[name] else { throw SafeTensorsError.tensorNotFound(path: path, tensor: name) }
        return (files[i], try files[i].entry(name))
    }

    public func entry(_ name: String) throws -> TensorEntry { try locate(name).entry }

    /// A tensor as fp32 (a view of the mapping for aligned F32 data).
    public func floatTensor(_ name: String) throws -> Tensor {
        let (file, entry) = try locate(name)
        return try file.floatTensor(entry)
    }

    /// A 2-D BF16/F16 tensor kept as stored (see SafeTensorsFile.halfMatrix); nil for other dtypes.
    public func halfMatrix(_ name: String) throws -> HalfMatrix? {
        let (file, entry) = try locate(name)
        return file.halfMatrix(entry)
    }

    /// All entries in `tensorNames` order.
    public var entries: [TensorEntry] { tensorNames.map { try! entry($0) } }

    /// Metadata of the first file (sharded checkpoints repeat it).
    public var metadata: [String: String]? { files.first?.metadata }

    /// config.json beside the weights, if present.
    public func config() throws -> [String: Any]? {
        let configPath = directory + "/config.json"
        guard FileManager.default.fileExists(atPath: configPath) else { return nil }
        let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SafeTensorsError.invalidIndex(path: configPath, detail: "config.json is not a JSON object")
        }
        return json
    }
}
