import Foundation
import LQFormats

/// One multiple-choice question as lm-evaluation-harness scores it: each choice is a (context,
/// continuation) pair whose continuation's log-likelihood given the context is summed; `lengths`
/// are what acc_norm divides by (the choice strings' lengths in characters).
public struct MultipleChoiceItem: Sendable, Equatable {
    public let requests: [(context: String, continuation: String)]
    public let gold: Int
    public let lengths: [Int]

    public static func == (a: Self, b: Self) -> Bool {
        a.gold == b.gold && a.lengths == b.lengths && a.requests.elementsEqual(b.requests) { $0.context == $1.context && $0.continuation == $1.continuation }
    }
}

/// The zero-shot tasks of the LLaMA-3 low-bit study, read from the Hugging Face datasets' own
/// schemas (JSON lines as `datasets` exports them) and formatted as lm-evaluation-harness v0.4's
/// task YAMLs format them (target_delimiter " "; scripts/make-task-fixtures.py quotes them).
public enum MultipleChoiceTask: String, CaseIterable, Sendable {
    case piqa
    case arcEasy = "arc_easy"
    case arcChallenge = "arc_challenge"
    case hellaswag
    case winogrande

    /// Whether the harness reports acc_norm for the task (winogrande: acc only).
    public var hasNormalizedAccuracy: Bool { self != .winogrande }

    /// Every record of a .jsonl (optionally .gz) task file, each formatted; a record missing a field
    /// is named by file and line.
    public func items(path: String) throws -> [MultipleChoiceItem] {
        try Record.all(path: path).map(item)
    }

    func item(_ r: Record) throws -> MultipleChoiceItem {
        switch self {
        case .piqa:
            let choices = [try r.string("sol1"), try r.string("sol2")]
            let gold = try r.int("label")
            try r.check(gold, choices.count, "label")
            return Self.sharedContext("Question: \(try r.string("goal"))\nAnswer:", choices: choices, gold: gold)
        case .arcEasy, .arcChallenge:
            let choices = try r.object("choices")
            let texts = try choices.strings("text"), labels = try choices.strings("label")
            guard texts.count == labels.count, !texts.isEmpty else { throw r.bad("choices", "needs as many labels as texts") }
            let key = try r.string("answerKey")
            // The harness's v0.3 code maps "1"–"5" to "A"–"E" in both; v0.4 looks the key up among the labels as given.
            guard let gold = labels.firstIndex(of: key) ?? labels.map(Self.letter).firstIndex(of: Self.letter(key)) else {
                throw r.bad("answerKey", "'\(key)' is none of the labels \(labels)")
            }
            return Self.sharedContext("Question: \(try r.string("question"))\nAnswer:", choices: texts, gold: gold)
        case .hellaswag:
            let ctx = try r.string("ctx_a") + " " + Self.capitalized(try r.string("ctx_b"))
            let endings = try r.strings("endings")
            guard let gold = Int(try r.string("label")) else { throw r.bad("label", "must be a digit string") }
            try r.check(gold, endings.count, "label")
            return Self.sharedContext(Self.hellaswagPreprocess(try r.string("activity_label") + ": " + ctx),
                                      choices: endings.map(Self.hellaswagPreprocess), gold: gold)
        case .winogrande:
            let sentence = try r.string("sentence")
            guard let blank = sentence.firstIndex(of: "_") else { throw r.bad("sentence", "has no \"_\" to fill") }
            let options = [try r.string("option1"), try r.string("option2")]
            guard let gold = ["1": 0, "2": 1][try r.string("answer")] else { throw r.bad("answer", "must be \"1\" or \"2\"") }
            // The context changes with the option; the rest of the sentence is the shared continuation.
            let target = sentence[sentence.index(after: blank)...].trimmingCharacters(in: .whitespaces)
            let contexts = options.map { String(sentence[..<blank]) + $0 }
            return MultipleChoiceItem(requests: contexts.map { ($0, " " + target) }, gold: gold, lengths: contexts.map(\.unicodeScalars.count))
        }
    }

    static func sharedContext(_ context: String, choices: [String], gold: Int) -> MultipleChoiceItem {
        MultipleChoiceItem(requests: choices.map { (context, " " + $0) }, gold: gold, lengths: choices.map(\.unicodeScalars.count))
    }

    static func letter(_ label: String) -> String { ["1": "A", "2": "B", "3": "C", "4": "D", "5": "E"][label] ?? label }

    /// Python's str.capitalize(): the first character upper-cased, the rest lower-cased.
    static func capitalized(_ s: String) -> String {
        guard let first = s.first else { return s }
        return String(first).uppercased() + s.dropFirst().lowercased()
    }

    /// The harness's hellaswag preprocess: strip, " [title]" → ". ", bracketed text removed, double spaces collapsed once.
    static func hellaswagPreprocess(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        t = t.replacingOccurrences(of: " [title]", with: ". ")
        t = t.replacingOccurrences(of: "\\[.*?\\]", with: "", options: .regularExpression)
        return t.replacingOccurrences(of: "  ", with: " ")
    }
}

/// A task record's fields, with errors naming the file, line and field.
struct Record {
    let fields: [String: Any]
    let at: String

    /// Every record of a .jsonl (optionally .gz) file, named "path:line"; blank lines are skipped.
    static func all(path: String) throws -> [Record] {
        let data = try Gzip.readMaybeCompressed(path: path)
        var out: [Record] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            let at = "\(path):\(n + 1)"
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TaskError.badRecord(at: at, detail: "is not a JSON object")
            }
            out.append(Record(fields: record, at: at))
        }
        guard !out.isEmpty else { throw TaskError.badRecord(at: path, detail: "holds no records") }
        return out
    }

    /// An optional field: nil when absent or null, else it must be a string.
    func optionalString(_ key: String) throws -> String? {
        guard let v = fields[key], !(v is NSNull) else { return nil }
        guard let s = v as? String else { throw bad(key, "must be a string") }
        return s
    }

    func bad(_ key: String, _ detail: String) -> TaskError { .badRecord(at: at, detail: "\"\(key)\" \(detail)") }

    func value(_ key: String) throws -> Any {
        guard let v = fields[key], !(v is NSNull) else { throw TaskError.badRecord(at: at, detail: "is missing \"\(key)\"") }
        return v
    }

    func string(_ key: String) throws -> String {
        let v = try value(key)
        if let s = v as? String { return s }
        if let n = v as? NSNumber { return n.stringValue }
        throw bad(key, "must be a string")
    }

    func int(_ key: String) throws -> Int {
        let v = try value(key)
        if let n = v as? NSNumber { return n.intValue }
        if let s = v as? String, let n = Int(s) { return n }
        throw bad(key, "must be an integer")
    }

    func strings(_ key: String) throws -> [String] {
        guard let list = try value(key) as? [Any] else { throw bad(key, "must be a list of strings") }
        return try list.map { guard let s = $0 as? String else { throw bad(key, "must be a list of strings") }; return s }
    }

    func object(_ key: String) throws -> Record {
        guard let o = try value(key) as? [String: Any] else { throw bad(key, "must be an object") }
        return Record(fields: o, at: at + " \"\(key)\"")
    }

    func check(_ gold: Int, _ count: Int, _ key: String) throws {
        guard (0..<count).contains(gold) else { throw bad(key, "is \(gold), outside the \(count) choices") }
    }
}

public enum TaskError: Error, CustomStringConvertible, Equatable {
    case unknownTask(name: String, known: [String])
    case badRecord(at: String, detail: String)
    case contextTooLong(item: Int, tokens: Int, window: Int)
    case emptyContinuation(item: Int)
    case badPattern(String)
    case badTemplate(String)
    case itemFailed(at: String, detail: String)

    public var description: String {
        switch self {
        case let .unknownTask(name, known): return "unknown task '\(name)' (known: \(known.joined(separator: ", ")))"
        case let .badRecord(at, detail): return "\(at): \(detail)"
        case let .contextTooLong(item, tokens, window):
            return "item \(item): its continuation alone is \(tokens) tokens, more than the \(window)-token window"
        case let .emptyContinuation(item):
            return "item \(item): a choice's continuation encodes to no tokens (characters outside the tokenizer's vocabulary?)"
        case let .badPattern(pattern): return "the answer pattern '\(pattern)' is not a regular expression"
        case let .badTemplate(template): return "the prompt template \(template.debugDescription) has no \(PromptTemplate.placeholder) to fill"
        case let .itemFailed(at, detail): return "\(at): \(detail)"
        }
    }
}
