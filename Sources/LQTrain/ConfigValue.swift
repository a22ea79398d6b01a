import Foundation
import Yams

/// How one kind of configuration value is read from a parsed YAML node (validated, with errors
/// that name the key) and written back as a YAML scalar.
struct ConfigValue<V>: Sendable {
    let decode: @Sendable (_ raw: Any, _ key: String) throws -> V
    let encode: @Sendable (V) -> String
}

extension ConfigValue {
    /// The same value, or null (which reads and writes as nil).
    var optional: ConfigValue<V?> {
        ConfigValue<V?>(decode: { raw, key in raw is NSNull ? nil : try decode(raw, key) },
                        encode: { $0.map(encode) ?? "null" })
    }

    static func refuseNull(_ raw: Any, _ key: String) throws {
        if raw is NSNull { throw ConfigError.badValue(key: key, detail: "cannot be null") }
    }
}

extension ConfigValue where V == String {
    static var string: ConfigValue {
        ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            guard let s = raw as? String else { throw ConfigError.badValue(key: key, detail: "must be a string (got \(raw))") }
            return s
        }, encode: { yamlString($0) })
    }

    static func yamlString(_ s: String) -> String {
        s.isEmpty ? "\"\"" : ((try? Yams.dump(object: s).trimmingCharacters(in: .whitespacesAndNewlines)) ?? s)
    }
}

extension ConfigValue where V == Bool {
    static var bool: ConfigValue {
        ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            guard let b = raw as? Bool else { throw ConfigError.badValue(key: key, detail: "must be true or false (got \(raw))") }
            return b
        }, encode: { "\($0)" })
    }
}

extension ConfigValue where V == Int {
    static func int(_ range: ClosedRange<Int>) -> ConfigValue {
        ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            guard !(raw is Bool) else { throw ConfigError.badValue(key: key, detail: "must be an integer (got \(raw))") }
            let value: Int
            if let i = raw as? Int { value = i }
            else if let d = raw as? Double, d == d.rounded(), abs(d) < 1e15 { value = Int(d) }
            else { throw ConfigError.badValue(key: key, detail: "must be an integer (got \(raw))") }
            guard range.contains(value) else {
                throw ConfigError.badValue(key: key, detail: "must be in \(range.lowerBound)...\(range.upperBound) (got \(value))")
            }
            return value
        }, encode: { "\($0)" })
    }
}

/// An interval of real numbers with either end open, spelled as the error messages show it.
struct Interval: CustomStringConvertible {
    let lower: Double, upper: Double
    let lowerOpen: Bool, upperOpen: Bool

    static func closed(_ r: ClosedRange<Double>) -> Interval { Interval(lower: r.lowerBound, upper: r.upperBound, lowerOpen: false, upperOpen: false) }
    static func halfOpen(_ r: Range<Double>) -> Interval { Interval(lower: r.lowerBound, upper: r.upperBound, lowerOpen: false, upperOpen: true) }
    static func above(_ lower: Double, atMost upper: Double) -> Interval { Interval(lower: lower, upper: upper, lowerOpen: true, upperOpen: false) }

    func contains(_ x: Double) -> Bool {
        (lowerOpen ? x > lower : x >= lower) && (upperOpen ? x < upper : x <= upper)
    }

    var description: String {
        if lowerOpen { return "above \(lower) and at most \(upper)" }
        return "in \(lower)\(upperOpen ? "..<" : "...")\(upper)"
    }
}

extension ConfigValue where V == Double {
    static func number(_ interval: Interval) -> ConfigValue {
        ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            let value: Double?
            if raw is Bool { value = nil }
            else if let i = raw as? Int { value = Double(i) }
            else if let s = raw as? String { value = Double(s) }  // YAML 1.1 reads 1e-4 (no dot) as a string
            else { value = raw as? Double }
            guard let d = value else { throw ConfigError.badValue(key: key, detail: "must be a number (got \(raw))") }
            guard interval.contains(d) else { throw ConfigError.badValue(key: key, detail: "must be \(interval) (got \(d))") }
            return d
        }, encode: { "\($0)" })
    }

    static func number(_ range: ClosedRange<Double>) -> ConfigValue { number(.closed(range)) }
}

extension ConfigValue where V: RawRepresentable & CaseIterable, V.RawValue == String {
    /// One of the enum's cases, by raw value.
    static var choice: ConfigValue {
        let options = V.allCases.map(\.rawValue)
        return ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            guard let s = raw as? String, let v = V(rawValue: s) else {
                throw ConfigError.badValue(key: key, detail: "must be one of \(options.joined(separator: ", ")) (got \(raw))"
                    + ((raw as? String).flatMap { nearestName($0, options) }.map { "; did you mean '\($0)'?" } ?? ""))
            }
            return v
        }, encode: { ConfigValue<String>.yamlString($0.rawValue) })
    }
}

extension ConfigValue where V == [String] {
    /// A non-empty list drawn from `options` (a single name reads as a list of one).
    static func list(of options: [String]) -> ConfigValue {
        ConfigValue(decode: { raw, key in
            try refuseNull(raw, key)
            var out: [String] = []
            for item in (raw as? [Any]) ?? [raw] {
                guard let s = item as? String, options.contains(s) else {
                    throw ConfigError.badValue(key: key, detail: "has '\(item)', not one of \(options.joined(separator: ", "))"
                        + ((item as? String).flatMap { nearestName($0, options) }.map { "; did you mean '\($0)'?" } ?? ""))
                }
                out.append(s)
            }
            guard !out.isEmpty else { throw ConfigError.badValue(key: key, detail: "must name at least one projection") }
            return out
        }, encode: { "[" + $0.joined(separator: ", ") + "]" })
    }
}

/// The closest name by edit distance (also comparing the last dotted component), if reasonably close.
func nearestName(_ key: String, _ names: [String]) -> String? {
    guard key.count <= 200 else { return nil }  // no name is that long; the distance would cost its square
    func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
    let last = String(key.split(separator: ".").last ?? "")
    let scored = names.map { name -> (String, Int) in
        let nameLast = String(name.split(separator: ".").last!)
        return (name, min(distance(key, name), distance(last, nameLast) + (key.contains(".") ? 1 : 0)))
    }
    guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, key.count / 3) else { return nil }
    return best.0
}
