import Foundation
import LQDistributed

/// Small text helpers shared by the commands.
enum Format {
    /// 22713728 → "22,713,728".
    static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// 90868376 → "86.7 MiB".
    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }

    /// A table with left-aligned text columns and right-aligned numeric ones.
    static func table(header: [String], rows: [[String]], rightAligned: Set<Int>) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(header), line(widths.map { String(repeating: "-", count: $0) })]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

/// Writes one line to standard error.
/// A line on stderr; in a job of several ranks, a rank other than 0 says which it is.
func printError(_ message: String) {
    let world = Cluster.world
    let prefix = world.size > 1 && !world.isRoot ? "[rank \(world.rank) of \(world.size)] " : ""
    FileHandle.standardError.write(Data((prefix + message + "\n").utf8))
}
