import Foundation
import LQTensor

/// One question of the chain-of-thought faithfulness probes, from a JSON-lines record in GSM8K's
/// schema (`question`, `answer` = a worked solution ending "#### N") or a multiple-choice one
/// (`question`, `choices`, `answer` as an index or a letter, optionally `solution`: a worked
/// solution), with optional rewritten solutions, each judged against the answer after the
/// solution itself: `corrupted_chain` (the solution up to a sentence with a mistake, which the
/// model continues) and `paraphrased_chain` (the solution reworded).
public struct ReasoningItem: Sendable, Equatable {
    /// How answers are read and compared: as numbers, or as a choice's letter.
    public enum Kind: Sendable, Equatable {
        case number
        case choice(labels: [String])
    }

    /// "file:line" of the record.
    public let at: String
    /// The question as the prompt shows it (with lettered choices for multiple choice).
    public let question: String
    /// The gold answer in canonical form (a canonical number, or a letter).
    public let gold: String
    public let kind: Kind
    /// The record's worked solution (GSM8K's text before "####"), which the rewritten ones rewrite.
    public let solution: String?
    public let corruptedChain: String?
    public let paraphrasedChain: String?

    public init(at: String, question: String, gold: String, kind: Kind, solution: String? = nil, corruptedChain: String? = nil,
                paraphrasedChain: String? = nil) {
        self.at = at
        self.question = question
        self.gold = gold
        self.kind = kind
        self.solution = solution
        self.corruptedChain = corruptedChain
        self.paraphrasedChain = paraphrasedChain
    }

    /// Every record of a .jsonl (optionally .gz) file; a bad record is named by file and line.
    public static func all(path: String) throws -> [ReasoningItem] {
        try Record.all(path: path).map(item)
    }

    static func item(_ r: Record) throws -> ReasoningItem {
        func chain(_ key: String) throws -> String? {
            let s = try r.optionalString(key)?.trimmingCharacters(in: .whitespacesAndNewlines)
            if s?.isEmpty == true { throw r.bad(key, "is empty") }
            return s
        }
        var question = try r.string("question")
        let kind: Kind, gold: String
        var reference: String?
        if let v = r.fields["choices"], !(v is NSNull) {
            let choices = try r.strings("choices")
            guard (2...26).contains(choices.count) else { throw r.bad("choices", "needs 2 to 26 choices, not \(choices.count)") }
            let labels = choices.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
            question += zip(labels, choices).map { "\n(\($0)) \($1)" }.joined()
            let answer = try r.value("answer")
            var index: Int?
            if let n = answer as? NSNumber, n.doubleValue == n.doubleValue.rounded() { index = n.intValue }
            if let s = answer as? String { index = labels.firstIndex(of: s.trimmingCharacters(in: .whitespaces).uppercased()) ?? Int(s) }
            guard let index, labels.indices.contains(index) else {
                throw r.bad("answer", "must be a choice's index (0 to \(labels.count - 1)) or letter (A to \(labels.last!))")
            }
            kind = .choice(labels: labels)
            gold = labels[index]
            reference = try chain("solution")
        } else {
            let final: String
            switch try r.value("answer") {
            case let n as NSNumber: final = n.stringValue
            case let s as String:
                guard let mark = s.range(of: "####", options: .backwards) else {
                    throw r.bad("answer", "has no \"#### \" before the final answer (GSM8K's schema), and the record no \"choices\"")
                }
                final = s[mark.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
                let solution = s[..<mark.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
                reference = solution.isEmpty ? nil : solution
            default: throw r.bad("answer", "must be a string ending \"#### ANSWER\" or a number")
            }
            guard let number = Answers.canonicalNumber(final) else { throw r.bad("answer", "ends with \"\(final)\", which is not a number") }
            kind = .number
            gold = number
        }
        let corrupted = try chain("corrupted_chain"), paraphrased = try chain("paraphrased_chain")
        if reference == nil, let key = corrupted != nil ? "corrupted_chain" : paraphrased != nil ? "paraphrased_chain" : nil {
            throw r.bad(key, "needs the solution it rewrites, which the record lacks (" + (kind == .number ? "text before \"####\" in \"answer\")" : "\"solution\")"))
        }
        return ReasoningItem(at: r.at, question: question, gold: gold, kind: kind, solution: reference,
                             corruptedChain: corrupted, paraphrasedChain: paraphrased)
    }

    /// The answer in what the model wrote after the answer prefix: its first line with content,
    /// read by `extractor`, numbers in canonical form; nil when there is none.
    public func answer(in text: String, extractor: AnswerExtractor) throws -> String? {
        let start = text.firstIndex { !$0.isWhitespace } ?? text.endIndex
        let line = String(text[start..<(text[start...].firstIndex(where: \.isNewline) ?? text.endIndex)])
        guard let found = try extractor.extract(line) else { return nil }
        return kind == .number ? Answers.canonicalNumber(found) ?? found : found
    }
}

/// How an answer is read from the text the model writes after the answer prefix.
public enum AnswerExtractor: Sendable, Equatable {
    /// GSM8K's: the last number (a minus sign counts only when no letter or digit precedes it).
    case lastNumber
    /// The first capital letter among `labels` that stands alone ("B", "(B)", "B.").
    case letter(labels: [String])
    /// A regular expression: its first match's first capture group, or the whole match without one.
    case pattern(String)

    /// Numbers for numeric items, letters for multiple choice.
    public static func standard(for kind: ReasoningItem.Kind) -> AnswerExtractor {
        switch kind {
        case .number: return .lastNumber
        case let .choice(labels): return .letter(labels: labels)
        }
    }

    /// A pattern extractor, refused by name when the expression does not compile.
    public static func checkedPattern(_ pattern: String) throws -> AnswerExtractor {
        do { _ = try BoundedRegex(pattern) } catch { throw TaskError.badPattern(pattern) }
        return .pattern(pattern)
    }

    static let number = try! NSRegularExpression(pattern: #"(?:(?<![\p{L}\p{N}])-)?[0-9][0-9,]*(?:\.[0-9]+)?"#)
    static let standalone = try! NSRegularExpression(pattern: #"(?<![\p{L}\p{N}])[A-Z](?![\p{L}\p{N}])"#)

    /// Throws when a `pattern` does not compile or backtracks without bound on `text`.
    public func extract(_ text: String) throws -> String? {
        let ns = text as NSString, all = NSRange(location: 0, length: ns.length)
        switch self {
        case .lastNumber:
            return Self.number.matches(in: text, range: all).last.map { ns.substring(with: $0.range) }
        case let .letter(labels):
            return Self.standalone.matches(in: text, range: all).lazy.map { ns.substring(with: $0.range) }.first(where: labels.contains)
        case let .pattern(pattern):
            let regex = try BoundedRegex(pattern), utf16 = Array(text.utf16)
            guard let first = try regex.matches(utf16: utf16, group: regex.groups > 0 ? 1 : 0).first, let r = first else { return nil }
            return String(decoding: utf16[r], as: UTF16.self).trimmingCharacters(in: .whitespaces)
        }
    }
}

public enum Answers {
    /// A number as GSM8K's answers compare: commas stripped, no leading "+" or leading zeros, no
    /// trailing zeros after the point ("1,200.50" → "1200.5", "-0" → "0"); nil when not a number.
    public static func canonicalNumber(_ text: String) -> String? {
        var s = Substring(text.replacingOccurrences(of: ",", with: ""))
        var negative = false
        if s.first == "-" || s.first == "+" { negative = s.removeFirst() == "-" }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        let digits: (Substring) -> Bool = { $0.allSatisfy { ("0"..."9").contains($0) } }
        guard (1...2).contains(parts.count), parts.allSatisfy(digits), !parts[0].isEmpty || parts.count == 2 && !parts[1].isEmpty else { return nil }
        let whole = parts[0].drop { $0 == "0" }
        var fraction = parts.count == 2 ? String(parts[1]) : ""
        while fraction.hasSuffix("0") { fraction.removeLast() }
        let body = (whole.isEmpty ? "0" : String(whole)) + (fraction.isEmpty ? "" : "." + fraction)
        return negative && body != "0" ? "-" + body : body
    }
}

/// A chain of thought cut into sentences. A sentence ends at a line break, or at ".", "!" or "?"
/// (with any closing quotes or brackets) followed by white space or the end; a period after a
/// number alone at the sentence's start ("2. Add ...") is a list marker, and one inside a number
/// ("2.5") is not followed by white space. White space after an end belongs to the sentence
/// before it, so the sentences join back into the text.
public enum Sentences {
    /// The offsets (in Unicode scalars) where each sentence ends; the last is the text's length.
    /// Empty for a text of white space only.
    public static func ends(in text: String) -> [Int] {
        let s = Array(text.unicodeScalars), n = s.count
        let space: (Unicode.Scalar) -> Bool = { $0.properties.isWhitespace }
        let closers: Set<Unicode.Scalar> = ["\"", "'", ")", "]", "\u{201D}", "\u{2019}"]
        var ends: [Int] = [], start = 0, i = 0
        func hasContent(_ r: Range<Int>) -> Bool { s[r].contains { !space($0) } }
        while i < n {
            var end: Int?
            if s[i] == "\n" {
                end = i + 1
            } else if s[i] == "." || s[i] == "!" || s[i] == "?" {
                var j = i + 1
                while j < n && closers.contains(s[j]) { j += 1 }
                let listMarker = s[i] == "." && String(String.UnicodeScalarView(s[start..<i])).trimmingCharacters(in: .whitespaces).allSatisfy(\.isNumber)
                    && hasContent(start..<i)
                if (j == n || space(s[j])) && !listMarker { end = j }
            }
            guard var e = end else { i += 1; continue }
            while e < n && space(s[e]) { e += 1 }
            if hasContent(start..<e) {
                ends.append(e)
                start = e
            }
            i = e
        }
        if start < n {
            if hasContent(start..<n) { ends.append(n) } else if !ends.isEmpty { ends[ends.count - 1] = n }
        }
        return ends
    }

    /// The sentences themselves.
    public static func split(_ text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        var out: [String] = [], start = 0
        for e in ends(in: text) {
            out.append(String(String.UnicodeScalarView(s[start..<e])))
            start = e
        }
        return out
    }
}

/// The adding-a-mistake probe's edit when no corrupted chain is given: one number of the chain
/// raised by 1 to 9.
public struct NumericPerturbation: Sendable, Equatable {
    /// Which of the segments holds the number.
    public let segment: Int
    /// The number's digits, in Unicode-scalar offsets of the text.
    public let range: Range<Int>
    public let original: String
    public let replacement: String

    /// Chooses, with `seed`, one run of digits lying inside one of `segments` (scalar ranges of
    /// `text`), and the amount added to it; nil when no segment holds one.
    public static func choose(in text: String, segments: [Range<Int>], seed: UInt64) -> NumericPerturbation? {
        let s = Array(text.unicodeScalars)
        let digit: (Unicode.Scalar) -> Bool = { ("0"..."9").contains($0) }
        var runs: [(segment: Int, range: Range<Int>)] = [], i = 0
        while i < s.count {
            guard digit(s[i]) else { i += 1; continue }
            var j = i
            while j < s.count && digit(s[j]) { j += 1 }
            // Up to 18 digits, so that the sum stays within Int.
            if j - i <= 18, let k = segments.firstIndex(where: { $0.lowerBound <= i && j <= $0.upperBound }) { runs.append((k, i..<j)) }
            i = j
        }
        guard !runs.isEmpty else { return nil }
        var rng = SeededGenerator(seed: seed)
        let pick = runs[Int(rng.next() % UInt64(runs.count))]
        let original = String(String.UnicodeScalarView(s[pick.range]))
        let raised = Int(original)! + 1 + Int(rng.next() % 9)
        return NumericPerturbation(segment: pick.segment, range: pick.range, original: original, replacement: String(raised))
    }

    /// The text of `segment` (the one holding the number) with the number replaced.
    public func apply(to text: String, segment bounds: Range<Int>) -> String {
        let s = Array(text.unicodeScalars)
        let edited = s[bounds.lowerBound..<range.lowerBound] + Array(replacement.unicodeScalars) + s[range.upperBound..<bounds.upperBound]
        return String(String.UnicodeScalarView(edited))
    }
}
