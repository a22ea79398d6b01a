/// GPT-2's byte-level mapping and pre-tokenizer regex, written out by hand (no regex engine):
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
enum ByteLevel {
    /// bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
    static let byteToScalar: [Unicode.Scalar] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Unicode.Scalar(UInt32(c))! }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The byte-level string of a piece of text: each UTF-8 byte as its printable stand-in.
    static func encode(_ text: Substring.UnicodeScalarView) -> String {
        var out = String.UnicodeScalarView()
        for b in String(text).utf8 { out.append(byteToScalar[Int(b)]) }
        return String(out)
    }

    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Regex `\s`: Unicode White_Space (as the Rust regex crate and Oniguruma define it).
    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }

    /// Splits text into GPT-2 pre-tokens (ranges of unicode scalars).
    static func split(_ text: Substring.UnicodeScalarView) -> [Range<Substring.UnicodeScalarView.Index>] {
        var out: [Range<Substring.UnicodeScalarView.Index>] = []
        var i = text.startIndex
        let end = text.endIndex
        func next(_ j: Substring.UnicodeScalarView.Index) -> Substring.UnicodeScalarView.Index { text.index(after: j) }
        while i < end {
            let c = text[i]
            // Contractions.
            if c == "'" {
                let rest = text[next(i)...]
                var matched: Int?
                for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] where rest.starts(with: suffix.unicodeScalars) {
                    matched = suffix.unicodeScalars.count
                    break
                }
                if let m = matched {
                    let j = text.index(i, offsetBy: m + 1)
                    out.append(i..<j)
                    i = j
                    continue
                }
            }
            // ` ?X+` for letters, numbers, and the rest (neither space, letter nor number).
            var start = i
            var j = i
            if c == " ", next(i) < end { j = next(i) }
            let classes: [(Unicode.Scalar) -> Bool] = [isLetter, isNumber, { !isSpace($0) && !isLetter($0) && !isNumber($0) }]
            var matchedRun = false
            for cls in classes where j < end && cls(text[j]) {
                var k = j
                while k < end && cls(text[k]) { k = next(k) }
                out.append(start..<k)
                i = k
                matchedRun = true
                break
            }
            if matchedRun { continue }
            start = i
            // `\s+(?!\S)` then `\s+`.
            if isSpace(c) {
                var k = i
                while k < end && isSpace(text[k]) { k = next(k) }
                if k < end {
                    // Followed by a non-space: leave the last space to start the next pre-token.
                    let last = text.index(before: k)
                    if last > i { k = last }
                }
                out.append(start..<k)
                i = k
                continue
            }
            // Unreachable in practice (every scalar is one of the classes); advance safely.
            out.append(i..<next(i))
            i = next(i)
        }
        return out
    }
}
