import Foundation
import LQFormats

/// The error table kept between runs (`--ilp-cache`), so that another budget costs seconds.
///
/// An entry is valid only for the weights it was computed from, the options that shaped it (rank,
/// SVD method, Fisher weights) and the code that computed it: each matrix carries the fingerprint
/// of its weights, each table the options and Fisher fingerprint, and the file the version of the
/// error-table code. A file made for another checkpoint or by other code is refused, never reused.
public struct ErrorTableCache: Codable, Equatable {
    /// Bump whenever ErrorTable.errors, the quantizer or the SVD would give other numbers.
    public static let codeVersion = 3
    public static let formatName = "lqlora-error-table"

    public struct Matrix: Codable, Equatable {
        /// Fingerprint of the weights (dtype, shape, CRC-32 of the stored bytes).
        public var weights: String
        /// Options key → configuration name → error.
        public var tables: [String: [String: Double]]
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(path: String, detail: String)
        case otherCode(path: String, found: Int?)
        case otherWeights(path: String, tensor: String, cached: String, current: String)

        public var description: String {
            switch self {
            case let .unreadable(path, detail):
                return "\(path): not an lqlora error-table cache (\(detail)); delete it or name another --ilp-cache"
            case let .otherCode(path, found):
                let made = found.map { "version \($0) of the error-table code" } ?? "an older lqlora without a version"
                return "\(path) was made by \(made); this lqlora computes version \(ErrorTableCache.codeVersion) and would mix the two: delete the file to recompute"
            case let .otherWeights(path, tensor, cached, current):
                return "\(path) holds errors of '\(tensor)' for other weights (\(cached), this checkpoint has \(current)): it was made for another model; use another --ilp-cache or delete it"
            }
        }
    }

    public var format = ErrorTableCache.formatName
    public var version = ErrorTableCache.codeVersion
    public var matrices: [String: Matrix] = [:]

    public init() {}

    /// The key of one table: every option that changes an error.
    public static func optionsKey(rank: Int, svd: Decomposition.SVDMethod, fisher: String?) -> String {
        "rank \(rank) svd \(rank > 0 ? svd.rawValue : "none") fisher \(fisher ?? "none")"
    }

    /// The cache at `path`, empty if there is no file; refused if it is not one or other code made it.
    public static func load(path: String) throws -> ErrorTableCache {
        guard FileManager.default.fileExists(atPath: path) else { return ErrorTableCache() }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Failure.unreadable(path: path, detail: "cannot read: \(error.localizedDescription)")
        }
        guard let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure.unreadable(path: path, detail: "not a JSON object")
        }
        guard header["format"] as? String == formatName else {
            // The unversioned caches of earlier releases are objects of options → tables.
            if header["format"] == nil && header.values.allSatisfy({ $0 is [String: Any] }) { throw Failure.otherCode(path: path, found: nil) }
            throw Failure.unreadable(path: path, detail: "no \"format\": \"\(formatName)\"")
        }
        guard let version = header["version"] as? Int, version == codeVersion else {
            throw Failure.otherCode(path: path, found: header["version"] as? Int)
        }
        do { return try JSONDecoder().decode(ErrorTableCache.self, from: data) } catch {
            throw Failure.unreadable(path: path, detail: "\(error)")
        }
    }

    /// The cached errors of `name` for `configs` under `options`, nil if any is missing.
    /// Throws if the cache holds this matrix for other weights.
    public func errors(_ name: String, weights: String, options: String, configs: [String], path: String) throws -> [Double]? {
        guard let m = matrices[name] else { return nil }
        guard m.weights == weights else { throw Failure.otherWeights(path: path, tensor: name, cached: m.weights, current: weights) }
        guard let table = m.tables[options] else { return nil }
        var out: [Double] = []
        for c in configs {
            guard let e = table[c] else { return nil }
            out.append(e)
        }
        return out
    }

    public mutating func store(_ name: String, weights: String, options: String, configs: [String], errors: [Double]) {
        precondition(configs.count == errors.count)
        var m = matrices[name].flatMap { $0.weights == weights ? $0 : nil } ?? Matrix(weights: weights, tables: [:])
        for (c, e) in zip(configs, errors) { m.tables[options, default: [:]][c] = e }
        matrices[name] = m
    }

    public func save(path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(self).writeAtomically(to: path)
    }
}
