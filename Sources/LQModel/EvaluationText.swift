import Foundation
import LQFormats

/// Text for evaluation: .txt, or .jsonl with a `text` field per line (joined by blank lines), either
/// gzipped. Line endings are read as Python reads text files (universal newlines: \r\n and \r become
/// \n), so token counts and perplexities agree with scripts that `open()` the same file.
public enum EvaluationText {
    public static func read(path: String) throws -> String {
        let data = try Gzip.readMaybeCompressed(path: path)
        var bytes = [UInt8]()
        bytes.reserveCapacity(data.count)
        var previousCR = false
        for b in data {
            if b == 0x0D { bytes.append(0x0A); previousCR = true; continue }
            if b == 0x0A && previousCR { previousCR = false; continue }
            previousCR = false
            bytes.append(b)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let base = path.hasSuffix(".gz") ? String(path.dropLast(3)) : path
        guard base.hasSuffix(".jsonl") else { return text }
        var parts: [String] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let t = obj["text"] as? String else {
                throw ModelError.badConfig(path: "\(path):\(n + 1)", key: "text", detail: "is missing: expected a JSON object with a \"text\" string per line")
            }
            parts.append(t)
        }
        return parts.joined(separator: "\n\n")
    }
}
