import Foundation

/// JSON text that keeps floats looking like floats (6.0, not 6) and keys sorted, as Python's
/// json module writes them: config files stay loadable by transformers, which checks types.
public enum JSONText {
    public static func serialize(_ value: Any, indent: Int = 2) -> String {
        var out = ""
        write(value, level: 0, indent: indent, into: &out)
        return out
    }

    private static func write(_ value: Any, level: Int, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent * (level + 1))
        let closePad = String(repeating: " ", count: indent * level)
        switch value {
        case is NSNull:
            out += "null"
        case let b as Bool where !(value is NSNumber) || isBool(value as! NSNumber):
            out += b ? "true" : "false"
        case let n as NSNumber:
            if isBool(n) { out += n.boolValue ? "true" : "false" } else if isFloat(n) { out += float(n.doubleValue) } else { out += "\(n.int64Value)" }
        case let i as Int:
            out += "\(i)"
        case let d as Double:
            out += float(d)
        case let f as Float:
            out += float(Double(f))
        case let s as String:
            out += SafeTensorsWriter.jsonString(s)
        case let array as [Any]:
            if array.isEmpty { out += "[]"; return }
            out += "[\n"
            for (i, v) in array.enumerated() {
                out += pad
                write(v, level: level + 1, indent: indent, into: &out)
                out += i + 1 < array.count ? ",\n" : "\n"
            }
            out += closePad + "]"
        case let object as [String: Any]:
            if object.isEmpty { out += "{}"; return }
            out += "{\n"
            let keys = object.keys.sorted()
            for (i, k) in keys.enumerated() {
                out += pad + SafeTensorsWriter.jsonString(k) + ": "
                write(object[k]!, level: level + 1, indent: indent, into: &out)
                out += i + 1 < keys.count ? ",\n" : "\n"
            }
            out += closePad + "}"
        default:
            out += SafeTensorsWriter.jsonString("\(value)")
        }
    }

    private static func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
    private static func isFloat(_ n: NSNumber) -> Bool { ["d", "f"].contains(String(cString: n.objCType)) }

    /// Python's repr of a float: shortest round-trip digits, always with a '.' or an exponent.
    static func float(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        let s = "\(d)"
        return s.contains(".") || s.contains("e") ? s : s + ".0"
    }
}
