#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A progress line on stderr: redrawn in place on a terminal, printed as plain lines (at most one
/// a second, plus the last) when stderr is a file or pipe.
final class Progress {
    private var total: Int
    private let label: String
    let startTime = Timing.now()
    private var lastPrint = -Double.infinity
    private let interactive = isatty(STDERR_FILENO) != 0

    init(total: Int, label: String) {
        self.total = total
        self.label = label
    }

    /// Changes the total once it is known.
    func retotal(_ n: Int) { total = n }

    /// Reports `done` of `total` items, with a short detail such as the current item.
    func update(_ done: Int, detail: String = "") {
        let now = Timing.now()
        let finished = done >= total
        if !finished && now - lastPrint < (interactive ? 0.1 : 1.0) { return }
        lastPrint = now
        let elapsed = now - startTime
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        var line = "\(label) \(done)/\(total)"
        if interactive {
            let width = 24, filled = Int(fraction * Double(width))
            line = "\(label) [" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] \(done)/\(total)"
        }
        line += "  \(Self.clock(elapsed)) elapsed" + (finished ? "" : ", eta \(Self.clock(eta))")
        if !detail.isEmpty { line += "  " + detail }
        if interactive {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (finished ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    /// A line of its own above the progress line (which the next update redraws).
    func message(_ text: String) {
        FileHandle.standardError.write(Data(((interactive ? "\r\u{1B}[K" : "") + text + "\n").utf8))
        lastPrint = -Double.infinity
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
    }
}
