import CZlib
import Foundation

public enum GzipError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String)
    case corrupt(path: String, detail: String)
    /// Decompressed past `bytes` and past `ratio` times its compressed size: a decompression bomb.
    case expandsTooFar(path: String, bytes: Int, ratio: Int)

    public var description: String {
        switch self {
        case let .cannotOpen(path): return "\(path): cannot open"
        case let .corrupt(path, detail): return "\(path): corrupt gzip data: \(detail)"
        case let .expandsTooFar(path, bytes, ratio):
            return "\(path): expands past \(bytes >> 20) MiB and past \(ratio)× its compressed size (text compresses about 3-10×); not read further, as a decompression bomb would fill the memory"
        }
    }
}

/// Reads and writes gzip files through zlib, for `.jsonl.gz` and `.txt.gz` data.
public enum Gzip {
    /// How far a file may expand: past `bytes` it may grow to at most `ratio` times its compressed size.
    public struct ExpansionLimit: Sendable {
        public var bytes: Int
        public var ratio: Int
        public init(bytes: Int, ratio: Int) {
            self.bytes = bytes
            self.ratio = ratio
        }
        /// Real text compresses 3-10×; zlib's ceiling is about 1,000×.
        public static let standard = ExpansionLimit(bytes: 1 << 30, ratio: 100)
    }

    /// The whole decompressed content. zlib's gzread also passes plain files through unchanged.
    public static func read(path: String, limit: ExpansionLimit = .standard) throws -> Data {
        guard let file = gzopen(path, "rb") else { throw GzipError.cannotOpen(path: path) }
        defer { gzclose(file) }
        let compressed = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        let ceiling = max(limit.bytes, compressed.multipliedReportingOverflow(by: limit.ratio).overflow ? Int.max : compressed * limit.ratio)
        var out = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
                throw GzipError.corrupt(path: path, detail: message)
            }
            if n == 0 {
                // A truncated stream ends like a complete one; zlib reports it through gzerror.
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? ""
                if code != Z_OK && code != Z_STREAM_END { throw GzipError.corrupt(path: path, detail: message) }
                break
            }
            out.append(contentsOf: chunk[0..<Int(n)])
            if out.count > ceiling { throw GzipError.expandsTooFar(path: path, bytes: limit.bytes, ratio: limit.ratio) }
        }
        return out
    }

    /// Writes `data` gzip-compressed.
    public static func write(_ data: Data, to path: String) throws {
        guard let file = gzopen(path, "wb") else { throw GzipError.cannotOpen(path: path) }
        let written = data.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        let closed = gzclose(file)
        if Int(written) != data.count || closed != Z_OK { throw GzipError.corrupt(path: path, detail: "write failed") }
    }

    /// Reads a data file, decompressing when its name ends in `.gz`.
    public static func readMaybeCompressed(path: String) throws -> Data {
        if path.hasSuffix(".gz") { return try read(path: path) }
        do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw GzipError.cannotOpen(path: path) }
    }
}
