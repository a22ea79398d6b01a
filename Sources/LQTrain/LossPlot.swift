import Foundation

/// A loss curve as a self-contained SVG: training loss per step, validation loss as points.
public enum LossPlot {
    public static func svg(train: [(step: Int, loss: Double)], valid: [(step: Int, loss: Double)], title: String) -> String {
        let width = 640.0, height = 400.0, left = 60.0, right = 20.0, top = 40.0, bottom = 50.0
        let all = (train.map(\.loss) + valid.map(\.loss)).filter(\.isFinite)
        let maxStep = Double(max(1, (train.map(\.step) + valid.map(\.step)).max() ?? 1))
        var lo = all.min() ?? 0, hi = all.max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let pad = (hi - lo) * 0.05
        lo -= pad; hi += pad
        func x(_ s: Int) -> Double { left + Double(s) / maxStep * (width - left - right) }
        func y(_ l: Double) -> Double { top + (hi - l) / (hi - lo) * (height - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(f(width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(esc(title))</text>\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(height - bottom))\" x2=\"\(f(width - right))\" y2=\"\(f(height - bottom))\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(height - bottom))\" stroke=\"black\"/>\n"
        for i in 0...4 {
            let v = lo + (hi - lo) * Double(i) / 4
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", v))</text>\n"
            let s = Int((maxStep * Double(i) / 4).rounded())
            out += "<text x=\"\(f(x(s)))\" y=\"\(f(height - bottom + 18))\" text-anchor=\"middle\">\(s)</text>\n"
        }
        out += "<text x=\"\(f(width / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">step</text>\n"
        out += "<text x=\"15\" y=\"\(f(height / 2))\" transform=\"rotate(-90 15 \(f(height / 2)))\" text-anchor=\"middle\">loss</text>\n"
        let points = train.filter { $0.loss.isFinite }.map { "\(f(x($0.step))),\(f(y($0.loss)))" }.joined(separator: " ")
        if !points.isEmpty { out += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"\(points)\"/>\n" }
        for v in valid where v.loss.isFinite {
            out += "<circle cx=\"\(f(x(v.step)))\" cy=\"\(f(y(v.loss)))\" r=\"3.5\" fill=\"#d62728\"/>\n"
        }
        out += "<text x=\"\(f(width - right - 150))\" y=\"\(f(top + 10))\" fill=\"#1f77b4\">— train loss</text>\n"
        if !valid.isEmpty { out += "<text x=\"\(f(width - right - 150))\" y=\"\(f(top + 26))\" fill=\"#d62728\">● validation loss</text>\n" }
        return out + "</svg>\n"
    }
}
