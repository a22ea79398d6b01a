import Foundation
import LQFormats

/// Text for evaluation: .txt, or .jsonl with a `text` field per line (joined by blank lines), either
/// gzipped. Line endings are read as Python reads text files (universal newlines: \r\n and \r become
/// \n), so token counts and perplexities agree with scripts that `open()` the same file.
public enum EvaluationText {
    public static func read(path: String) throws -> String {
        let text = try decoded(path: path)
        guard let documents = try documents(text, path: path) else { return text }
        return documents.joined(separator: "\n\n")
    }

    /// Separate texts: a .jsonl's `text` fields, or the other files' non-blank lines.
    public static func texts(path: String) throws -> [String] {
        let text = try decoded(path: path)
        return try documents(text, path: path)
            ?? text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(String.init)
    }

    /// The file's text (gunzipped when it is gzip) with universal newlines.
    static func decoded(path: String) throws -> String {
        try decoded(Gzip.readMaybeCompressed(path: path), path: path, strict: false)
    }

    /// `data` as text with universal newlines; invalid UTF-8 becomes U+FFFD, or with `strict` an
    /// error naming the first bad byte.
    public static func decoded(_ data: Data, path: String, strict: Bool) throws -> String {
        if strict, let offset = firstInvalidUTF8(data) {
            let line = data.prefix(offset).reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
            throw TextError.invalidUTF8(path: path, line: line, offset: offset)
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(data.count)
        var previousCR = false
        for b in data {
            if b == 0x0D { bytes.append(0x0A); previousCR = true; continue }
            if b == 0x0A && previousCR { previousCR = false; continue }
            previousCR = false
            bytes.append(b)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The byte offset of the first byte that is not part of a well-formed UTF-8 sequence.
    static func firstInvalidUTF8(_ data: Data) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = data.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &bytes) {
            case let .valid(scalar): offset += scalar.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// A .jsonl's `text` fields in order (nil for other files).
    static func documents(_ text: String, path: String) throws -> [String]? {
        try records(text, path: path)?.map(\.text)
    }

    /// A .jsonl's `text` fields with the line each is on (nil for other files).
    public static func records(_ text: String, path: String) throws -> [(text: String, line: Int)]? {
        let base = path.hasSuffix(".gz") ? String(path.dropLast(3)) : path
        guard base.hasSuffix(".jsonl") else { return nil }
        var parts: [(String, Int)] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let t = obj["text"] as? String else {
                throw ModelError.badRecord(path: path, line: n + 1, detail: "field \"text\" is missing: expected a JSON object with a \"text\" string per line")
            }
            parts.append((t, n + 1))
        }
        return parts
    }

    /// How GPTQ's data loaders join a test set before tokenizing it.
    public enum GPTQCorpus: String, CaseIterable, Sendable {
        /// WikiText-2 as the `datasets` rows of the raw file (each line with its newline, a blank line
        /// as ""), joined by "\n\n".
        case wikitext
        /// PTB (ptb_text_only): the sentences (lines, stripped) joined by " ".
        case ptb
        /// C4 validation (.jsonl, "text" per line): the first 1,100 documents joined by " "; the
        /// tokens are then cut to 256 windows.
        case c4
    }

    /// The text GPTQ's evaluation tokenizes for `corpus`, from the file a user has.
    public static func gptqJoined(path: String, corpus: GPTQCorpus) throws -> String {
        if corpus == .c4 {
            let raw = String(decoding: try Gzip.readMaybeCompressed(path: path), as: UTF8.self)
            guard let documents = try documents(raw, path: path) else {
                throw ModelError.unsupported(path: path, what: "C4 text that is not .jsonl with a \"text\" field per document")
            }
            return documents.prefix(1100).joined(separator: " ")
        }
        let text = try read(path: path)
        switch corpus {
        case .wikitext:
            var lines = text.components(separatedBy: "\n").map { $0 + "\n" }
            if text.hasSuffix("\n") { lines.removeLast() }  // no row after the final newline
            return lines.map { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? "" : $0 }.joined(separator: "\n\n")
        case .ptb:
            return text.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
        case .c4:
            preconditionFailure("handled above")
        }
    }
}

/// Text that cannot be read as text.
public enum TextError: Error, CustomStringConvertible, Equatable {
    case invalidUTF8(path: String, line: Int, offset: Int)

    public var description: String {
        switch self {
        case let .invalidUTF8(path, line, offset): return "\(path):\(line): not UTF-8 (byte \(offset) starts no valid character)"
        }
    }
}
