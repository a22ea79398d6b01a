import CHNSW
import Foundation

/// How the HNSW graph is built (hnswlib's parameters; its defaults but for the seed, which is fixed).
public struct HNSWParameters: Equatable, Sendable {
    /// Links per node (twice as many on the bottom layer).
    public var m = 16
    /// Candidates kept while inserting.
    public var efConstruction = 200
    /// hnswlib's level generator seed: one insertion order gives one graph.
    public var seed = 100

    public init() {}
}

/// An HNSW index (hnswlib) over unit vectors by inner product, labelled with passage ids.
final class HNSWIndex {
    private let handle: OpaquePointer
    let dimension: Int

    private init(handle: OpaquePointer, dimension: Int) {
        self.handle = handle
        self.dimension = dimension
    }

    deinit { lq_hnsw_free(handle) }

    private static func call<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T?) throws -> T {
        var message = [CChar](repeating: 0, count: 512)
        guard let value = body(&message, message.count) else { throw RAGError.hnsw(String(cString: message)) }
        return value
    }

    /// The graph over `count` vectors of `dimension` floats at `vectors`, inserted in order (one
    /// thread: hnswlib's parallel insertion makes a graph that depends on timing).
    static func build(vectors: UnsafePointer<Float>, labels: [Int], dimension: Int, parameters: HNSWParameters) throws -> HNSWIndex {
        let handle = try call { lq_hnsw_create(Int32(dimension), labels.count, parameters.m, parameters.efConstruction, parameters.seed, $0, $1) }
        let index = HNSWIndex(handle: handle, dimension: dimension)
        for (i, label) in labels.enumerated() {
            try call { lq_hnsw_add(handle, vectors + i * dimension, UInt64(label), $0, $1) == 0 ? () : nil }
        }
        return index
    }

    var count: Int { lq_hnsw_count(handle) }

    /// The `k` nearest labels to `query` with their inner products, nearest first; `ef` candidates
    /// are kept on the way (more: better recall, slower).
    func search(_ query: UnsafePointer<Float>, k: Int, ef: Int) throws -> [(label: Int, score: Float)] {
        lq_hnsw_set_ef(handle, max(ef, k))
        var labels = [UInt64](repeating: 0, count: k), distances = [Float](repeating: 0, count: k)
        let n = try Self.call { Optional(lq_hnsw_search(handle, query, Int32(k), &labels, &distances, $0, $1)).flatMap { $0 < 0 ? nil : Int($0) } }
        // hnswlib's inner-product distance is 1 - dot.
        return (0..<n).map { (Int(labels[$0]), 1 - distances[$0]) }
    }

    /// hnswlib's file format, as bytes (it writes only to files).
    func serialized() throws -> [UInt8] {
        try Self.throughTemporaryFile { path in
            try Self.call { lq_hnsw_save(handle, path, $0, $1) == 0 ? () : nil }
            return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        }
    }

    /// An index from `serialized()` bytes, refused when its vectors are not `dimension` floats.
    static func load(_ bytes: UnsafeRawBufferPointer, dimension: Int) throws -> HNSWIndex {
        try throughTemporaryFile { path in
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let handle = try call { lq_hnsw_load(path, Int32(dimension), $0, $1) }
            return HNSWIndex(handle: handle, dimension: dimension)
        }
    }

    private static func throughTemporaryFile<T>(_ body: (String) throws -> T) throws -> T {
        let path = NSTemporaryDirectory() + "lqlora-hnsw-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }
}
