import CTextBreak
import Foundation

/// How a document is cut into passages. A passage never crosses a paragraph (lines up to a blank line).
public enum Chunking: Equatable, Sendable, CustomStringConvertible {
    /// `n` sentences per passage (ICU's sentence boundaries), the last of a paragraph possibly fewer.
    case sentences(Int)
    /// Whole words, as many as fit in `n` of the embedder's tokens (a longer word is a passage of its own).
    case tokens(Int)

    /// "sentences:N" or "tokens:N".
    public init(_ spec: String) throws {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[1]), n >= 1 else { throw RAGError.badChunking(spec) }
        switch parts[0] {
        case "sentences": self = .sentences(n)
        case "tokens": self = .tokens(n)
        default: throw RAGError.badChunking(spec)
        }
    }

    public var description: String {
        switch self {
        case let .sentences(n): return "sentences:\(n)"
        case let .tokens(n): return "tokens:\(n)"
        }
    }
}

/// A span of a document: its text and the line of the file it starts on.
public struct Chunk: Equatable, Sendable {
    public let text: String
    public let line: Int

    public init(text: String, line: Int) {
        self.text = text
        self.line = line
    }
}

/// Cuts text into passages by a `Chunking`; `tokenCount` counts a word's tokens for `.tokens`.
public struct Chunker {
    public let chunking: Chunking
    let tokenCount: (Substring) -> Int

    public init(chunking: Chunking, tokenCount: @escaping (Substring) -> Int) {
        self.chunking = chunking
        self.tokenCount = tokenCount
    }

    /// The passages of `text`, whose first line is line `firstLine` of its file.
    public func chunks(of text: String, firstLine: Int = 1) throws -> [Chunk] {
        var out: [Chunk] = []
        for (paragraph, line) in Self.paragraphs(text, firstLine: firstLine) {
            let spans: [Range<String.Index>]
            switch chunking {
            case let .sentences(n): spans = try Self.groups(of: Self.sentences(paragraph), size: n)
            case let .tokens(n): spans = wordRuns(paragraph, maxTokens: n)
            }
            for span in spans {
                let lines = paragraph[paragraph.startIndex..<span.lowerBound].reduce(0) { $0 + ($1 == "\n" ? 1 : 0) }
                out.append(Chunk(text: String(paragraph[span]), line: line + lines))
            }
        }
        return out
    }

    /// Runs of non-blank lines, each with the line it starts on.
    static func paragraphs(_ text: String, firstLine: Int) -> [(Substring, Int)] {
        var out: [(Substring, Int)] = []
        var start: String.Index?, startLine = 0, end = text.startIndex
        var line = firstLine
        var lineStart = text.startIndex
        while lineStart < text.endIndex {
            let lineEnd = text[lineStart...].firstIndex(of: "\n") ?? text.endIndex
            if text[lineStart..<lineEnd].allSatisfy(\.isWhitespace) {
                if let s = start { out.append((text[s..<end], startLine)) }
                start = nil
            } else {
                if start == nil { (start, startLine) = (lineStart, line) }
                end = lineEnd
            }
            lineStart = lineEnd < text.endIndex ? text.index(after: lineEnd) : lineEnd
            line += 1
        }
        if let s = start { out.append((text[s..<end], startLine)) }
        return out
    }

    /// Each sentence of `paragraph` without the whitespace around it, as ICU breaks them.
    static func sentences(_ paragraph: Substring) throws -> [Range<String.Index>] {
        let utf16 = Array(paragraph.utf16)
        var ends = [Int32](repeating: 0, count: max(16, utf16.count / 16))
        var error: UnsafePointer<CChar>?
        var n = lq_sentence_ends(utf16, Int32(utf16.count), &ends, Int32(ends.count), &error)
        if n > ends.count {
            ends = [Int32](repeating: 0, count: Int(n))
            n = lq_sentence_ends(utf16, Int32(utf16.count), &ends, Int32(ends.count), &error)
        }
        guard n >= 0 else { throw RAGError.textBreak(error.map { String(cString: $0) } ?? "unknown error") }
        var out: [Range<String.Index>] = []
        var start = paragraph.startIndex
        for end in ends.prefix(Int(n)) {
            let e = paragraph.utf16.index(paragraph.startIndex, offsetBy: Int(end))
            if let r = trimmed(paragraph, start..<e) { out.append(r) }
            start = e
        }
        return out
    }

    /// Consecutive runs of `size` ranges, each spanning its first to its last.
    static func groups(of ranges: [Range<String.Index>], size: Int) -> [Range<String.Index>] {
        stride(from: 0, to: ranges.count, by: size).map { ranges[$0].lowerBound..<ranges[min(ranges.count, $0 + size) - 1].upperBound }
    }

    /// Whitespace-separated words, greedily packed while their tokens total at most `maxTokens`
    /// (BERT's pre-tokenizer splits at whitespace, so a run's tokens are the sum of its words').
    func wordRuns(_ paragraph: Substring, maxTokens: Int) -> [Range<String.Index>] {
        var out: [Range<String.Index>] = []
        var run: Range<String.Index>?, tokens = 0
        var i = paragraph.startIndex
        while i < paragraph.endIndex {
            guard !paragraph[i].isWhitespace else {
                i = paragraph.index(after: i)
                continue
            }
            let end = paragraph[i...].firstIndex(where: \.isWhitespace) ?? paragraph.endIndex
            let n = tokenCount(paragraph[i..<end])
            if let r = run, tokens + n <= maxTokens {
                run = r.lowerBound..<end
                tokens += n
            } else {
                if let r = run { out.append(r) }
                run = i..<end
                tokens = n
            }
            i = end
        }
        if let r = run { out.append(r) }
        return out
    }

    static func trimmed(_ s: Substring, _ r: Range<String.Index>) -> Range<String.Index>? {
        guard let first = s[r].firstIndex(where: { !$0.isWhitespace }), let last = s[r].lastIndex(where: { !$0.isWhitespace }) else { return nil }
        return first..<s.index(after: last)
    }
}
