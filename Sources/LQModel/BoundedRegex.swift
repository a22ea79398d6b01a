import CTextBreak

/// A regular expression that comes from a file or the command line, matched by ICU (the engine
/// NSRegularExpression wraps, so the same syntax and matches) with a bound on the work one match may
/// take: a pattern that backtracks catastrophically on some text fails with `timedOut` instead of
/// hanging the run.
public final class BoundedRegex: @unchecked Sendable {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// ICU's error name and the UTF-16 offset in the pattern where it stopped (-1: unknown).
        case invalid(pattern: String, reason: String, offset: Int)
        /// One match took more than `stepLimit` steps, or overflowed the backtracking stack.
        case timedOut(pattern: String, reason: String)

        public var description: String {
            switch self {
            case let .invalid(pattern, reason, offset):
                return "regular expression \(String(reflecting: pattern)) does not compile (\(reason)\(offset >= 0 ? " at offset \(offset)" : ""))"
            case let .timedOut(pattern, reason):
                return "regular expression \(String(reflecting: pattern)) backtracks without bound on this text (\(reason)); it was stopped"
            }
        }
    }

    public let pattern: String
    /// ICU engine steps one match may take; a step is about 10,000 backtracking moves. Real
    /// pre-tokenizer patterns take a handful per match; 2,000 stops a runaway one within seconds.
    public let stepLimit: Int32
    private let compiled: OpaquePointer

    public init(_ pattern: String, stepLimit: Int32 = 2_000) throws(Failure) {
        let utf16 = Array(pattern.utf16)
        var error: UnsafePointer<CChar>?
        var offset: Int32 = -1
        guard let compiled = lq_regex_open(utf16, Int32(utf16.count), &error, &offset) else {
            throw .invalid(pattern: pattern, reason: error.map { String(cString: $0) } ?? "?", offset: Int(offset))
        }
        self.pattern = pattern
        self.stepLimit = stepLimit
        self.compiled = compiled
    }

    deinit { lq_regex_close(compiled) }

    /// The number of capture groups.
    public var groups: Int { Int(lq_regex_groups(compiled)) }

    /// The UTF-16 offset ranges of the non-overlapping matches in `utf16`, left to right: the whole
    /// match, or capture group `group` (nil where it took no part).
    public func matches(utf16 text: [UInt16], group: Int = 0) throws(Failure) -> [Range<Int>?] {
        var spans = [Int32](repeating: 0, count: 2 * max(16, text.count / 4))
        var error: UnsafePointer<CChar>?
        while true {
            let n = lq_regex_matches(compiled, text, Int32(text.count), stepLimit, Int32(group), &spans, Int32(spans.count / 2), &error)
            if n < 0 { throw .timedOut(pattern: pattern, reason: error.map { String(cString: $0) } ?? "?") }
            if Int(n) <= spans.count / 2 {
                return (0..<Int(n)).map { spans[2 * $0] < 0 ? nil : Int(spans[2 * $0])..<Int(spans[2 * $0 + 1]) }
            }
            spans = [Int32](repeating: 0, count: 2 * Int(n))
        }
    }

    /// The whole matches in `text`, left to right.
    public func matches(in text: String) throws(Failure) -> [String] {
        let utf16 = Array(text.utf16)
        return try matches(utf16: utf16).map { String(decoding: utf16[$0!], as: UTF16.self) }
    }
}
