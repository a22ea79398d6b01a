import LQTensor

/// Deterministic mutations of a fuzz input, AFL's "havoc" stage written small: bit flips, bytes
/// and integers replaced by interesting values, truncation, insertion, deletion, splicing with
/// another corpus file, and mutations aimed at a format's integer fields (a binary header's
/// counts, sizes and offsets; a text format's numbers and structure).
public struct Mutator: Sendable {
    public let format: FuzzTarget.Format
    /// Inputs are kept below this size (a few times the largest seed), so each execution stays fast.
    public let maxSize: Int

    public init(format: FuzzTarget.Format, maxSize: Int) {
        self.format = format
        self.maxSize = maxSize
    }

    /// The integers that break size arithmetic: 0, 1, −1, 2^31, 2^32 − 1, 2^63, 2^64 − 1 and their neighbours.
    public static let interestingIntegers: [UInt64] = [
        0, 1, 2, 7, 32, 255, 256, 65535, 1 << 31, (1 << 31) - 1, UInt64(UInt32.max), 1 << 32, 1 << 62,
        (1 << 63) - 1, 1 << 63, UInt64.max, UInt64.max - 1,
    ]
    /// Their decimal spellings, and JSON/YAML numbers that do not fit the types they are read into.
    public static let interestingNumbers = [
        "0", "1", "-1", "2147483648", "4294967295", "9223372036854775807", "9223372036854775808", "18446744073709551615",
        "1000000000", "16777216", "1e9", "1.5", "-0", "1e400", "-1e400", "0.0", "nan", ".nan", ".inf", "99999999999999999999999",
    ]
    static let jsonTokens = ["\"\"", "null", "true", "[]", "{}", "[", "{", "]", "}", ",", ":", "\"\\u0000\"", "\"\\ud800\"", "-1", "1e9",
                             "\"<0x00>\"", "\"content\": \"\"", "\"id\": -1", "\"Ġ\"", "\"▁\"", "\"a b\"", "\"merges\": [\"a b\"]"]
    static let yamlTokens = ["&a ", "*a", "<<: *a", "[", "]", "{", "}", "- ", ": ", "~", "null", ".inf", "-.inf", ".nan", "!!binary ",
                             "!!str ", "!!int ", "? ", "|", ">", "---\n", "...\n", "\t", "\"\\u0000\"", "'", "#", "\n  ", "1e400", "0x7f",
                             "0o17", "2001-12-14", "yes", "on", "[*a,*a,*a,*a,*a,*a,*a,*a,*a]"]

    /// 1 to 4 stacked mutations of `input`; `corpus` gives splicing partners.
    public func mutate(_ input: [UInt8], corpus: [[UInt8]], rng: inout SeededGenerator) -> [UInt8] {
        var out = input
        let count = 1 + Int(rng.next() % 4)
        for _ in 0..<count { mutateOnce(&out, corpus: corpus, rng: &rng) }
        if out.count > maxSize { out.removeLast(out.count - maxSize) }
        return out
    }

    func mutateOnce(_ b: inout [UInt8], corpus: [[UInt8]], rng: inout SeededGenerator) {
        func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }
        switch below(11) {
        case 0 where !b.isEmpty:  // bit flips
            for _ in 0..<(1 + below(4)) { let i = below(b.count); b[i] ^= UInt8(1 << below(8)) }
        case 1 where !b.isEmpty:  // bytes replaced by interesting or random ones
            let interesting: [UInt8] = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x5c]
            for _ in 0..<(1 + below(3)) { b[below(b.count)] = below(2) == 0 ? interesting[below(interesting.count)] : UInt8(below(256)) }
        case 2:  // an interesting integer written at a random place, 1, 2, 4 or 8 bytes little-endian
            writeInteger(&b, at: below(b.count), width: 1 << below(4), value: Self.interestingIntegers[below(Self.interestingIntegers.count)])
        case 3 where !b.isEmpty:  // truncation
            b.removeLast(b.count - below(b.count))
        case 4:  // insertion: random bytes or a copy of a piece of the input
            let at = below(b.count + 1)
            if below(2) == 0 || b.isEmpty {
                b.insert(contentsOf: (0..<(1 + below(16))).map { _ in UInt8(below(256)) }, at: at)
            } else {
                let from = below(b.count), length = 1 + below(min(256, b.count - from))
                b.insert(contentsOf: Array(b[from..<(from + length)]), at: at)
            }
        case 5 where !b.isEmpty:  // deletion
            let from = below(b.count), length = 1 + below(min(64, b.count - from))
            b.removeSubrange(from..<(from + length))
        case 6 where !corpus.isEmpty:  // splice: our head, another file's tail
            let other = corpus[below(corpus.count)]
            b = Array(b.prefix(below(b.count + 1))) + Array(other.suffix(below(other.count + 1)))
        case 7, 8, 9:  // the format's own fields
            if format == .safetensors && below(2) == 0 {  // the header length
                writeInteger(&b, at: 0, width: 8, value: below(2) == 0 ? UInt64(below(b.count + 16)) : Self.interestingIntegers[below(Self.interestingIntegers.count)])
            } else if format == .gguf {
                let fields = GGUFFields.integerFields(b)
                if let f = fields.isEmpty ? nil : fields[below(fields.count)] {
                    let value = below(3) == 0 ? UInt64(below(1 << 16)) : Self.interestingIntegers[below(Self.interestingIntegers.count)]
                    writeInteger(&b, at: f.offset, width: f.width, value: value)
                } else {
                    writeInteger(&b, at: below(b.count), width: 8, value: Self.interestingIntegers[below(Self.interestingIntegers.count)])
                }
            } else {
                replaceNumber(&b, rng: &rng)
            }
        case 10 where format != .gguf:  // a token of the text format inserted
            let tokens = format == .yaml ? Self.yamlTokens : Self.jsonTokens
            b.insert(contentsOf: Array(tokens[below(tokens.count)].utf8), at: below(b.count + 1))
        default:
            if !b.isEmpty { b[below(b.count)] &+= 1 }
        }
    }

    func writeInteger(_ b: inout [UInt8], at offset: Int, width: Int, value: UInt64) {
        guard offset < b.count else { return }
        for k in 0..<width where offset + k < b.count { b[offset + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) }
    }

    /// A run of digits (with its sign) replaced by an interesting number.
    func replaceNumber(_ b: inout [UInt8], rng: inout SeededGenerator) {
        let digits = b.indices.filter { b[$0] >= 0x30 && b[$0] <= 0x39 }
        let number = Array(Self.interestingNumbers[Int(rng.next() % UInt64(Self.interestingNumbers.count))].utf8)
        guard !digits.isEmpty else { b.insert(contentsOf: number, at: Int(rng.next() % UInt64(b.count + 1))); return }
        var start = digits[Int(rng.next() % UInt64(digits.count))], end = start
        while start > 0 && (b[start - 1] >= 0x30 && b[start - 1] <= 0x39 || b[start - 1] == 0x2d || b[start - 1] == 0x2e) { start -= 1 }
        while end < b.count && (b[end] >= 0x30 && b[end] <= 0x39 || b[end] == 0x2e || b[end] == 0x65) { end += 1 }
        b.replaceSubrange(start..<end, with: number)
    }
}

/// Where a GGUF file's integer fields lie (counts, string lengths, value types, array lengths,
/// n_dims, dimensions, tensor types, offsets), found by a lenient walk that stops where the
/// file stops making sense: the targets of the field-aimed mutations.
public enum GGUFFields {
    public static func integerFields(_ b: [UInt8]) -> [(offset: Int, width: Int)] {
        var fields: [(Int, Int)] = []
        var p = 0
        func u(_ width: Int) -> UInt64? {
            guard p + width <= b.count else { return nil }
            var v: UInt64 = 0
            for k in 0..<width { v |= UInt64(b[p + k]) << (8 * k) }
            fields.append((p, width))
            p += width
            return v
        }
        func skipString() -> Bool {
            guard let n = u(8), n <= UInt64(b.count - p) else { return false }
            p += Int(n)
            return true
        }
        func skipValue(_ type: UInt64, depth: Int) -> Bool {
            let sizes: [UInt64: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
            if let s = sizes[type] {
                guard p + s <= b.count else { return false }
                if s > 1 && type != 6 && type != 12 { _ = u(s) } else { p += s }
                return true
            }
            if type == 8 { return skipString() }
            guard type == 9, depth < 3, let t = u(4), let n = u(8), n <= UInt64(b.count) else { return false }
            // Long arrays: only their first values are fields worth aiming at.
            for i in 0..<n {
                if i >= 4, let s = sizes[t] { let rest = Int(n - i) * s; guard p + rest <= b.count else { return false }; p += rest; break }
                guard skipValue(t, depth: depth + 1) else { return false }
            }
            return true
        }
        guard b.count >= 24 else { return fields }
        p = 4
        guard u(4) != nil, let tensors = u(8), let kvs = u(8) else { return fields }
        for _ in 0..<min(kvs, 4096) {
            guard skipString(), let type = u(4), skipValue(type, depth: 0) else { return fields }
        }
        for _ in 0..<min(tensors, 4096) {
            guard skipString(), let n = u(4), n <= 8 else { return fields }
            for _ in 0..<n { guard u(8) != nil else { return fields } }
            guard u(4) != nil, u(8) != nil else { return fields }
        }
        return fields
    }
}
