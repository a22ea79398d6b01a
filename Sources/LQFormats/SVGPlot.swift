import Foundation

/// Line and point charts as self-contained SVG: the one writer behind finetuning's loss.svg and
/// `allocate --plot`.
public enum SVGPlot {
    public struct Series: Sendable {
        public enum Style: Sendable { case line, points }
        public var label: String
        public var color: String
        public var style: Style
        public var points: [(x: Double, y: Double)]
        /// Text written beside each point (points only), e.g. "NF4".
        public var pointLabels: [String]?

        public init(label: String, color: String, style: Style, points: [(x: Double, y: Double)], pointLabels: [String]? = nil) {
            self.label = label
            self.color = color
            self.style = style
            self.points = points
            self.pointLabels = pointLabels
        }
    }

    /// The x axis from 0 (`fromZero`, integer ticks: steps) or over the data's range.
    public struct XAxis: Sendable {
        public var label: String
        public var fromZero: Bool
        public init(label: String, fromZero: Bool) {
            self.label = label
            self.fromZero = fromZero
        }
    }

    public static func svg(series: [Series], title: String, x axis: XAxis, yLabel: String) -> String {
        let width = 640.0, height = 400.0, left = 60.0, right = 20.0, top = 40.0, bottom = 50.0
        let finite = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        var lo = finite.map(\.y).min() ?? 0, hi = finite.map(\.y).max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let pad = (hi - lo) * 0.05
        lo -= pad; hi += pad
        var xLo = axis.fromZero ? 0 : finite.map(\.x).min() ?? 0
        var xHi = max(axis.fromZero ? 1 : xLo, finite.map(\.x).max() ?? 1)
        if !axis.fromZero {
            if xHi - xLo < 1e-9 { xLo -= 0.5; xHi += 0.5 }
            let xPad = (xHi - xLo) * 0.03
            xLo -= xPad; xHi += xPad
        }
        func x(_ v: Double) -> Double { left + (v - xLo) / (xHi - xLo) * (width - left - right) }
        func y(_ v: Double) -> Double { top + (hi - v) / (hi - lo) * (height - top - bottom) }
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
            let t = xLo + (xHi - xLo) * Double(i) / 4
            let tick = axis.fromZero ? t.rounded() : t
            let text = axis.fromZero ? "\(Int(tick))" : String(format: "%.3g", tick)
            out += "<text x=\"\(f(x(tick)))\" y=\"\(f(height - bottom + 18))\" text-anchor=\"middle\">\(text)</text>\n"
        }
        out += "<text x=\"\(f(width / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">\(esc(axis.label))</text>\n"
        out += "<text x=\"15\" y=\"\(f(height / 2))\" transform=\"rotate(-90 15 \(f(height / 2)))\" text-anchor=\"middle\">\(esc(yLabel))</text>\n"
        for s in series {
            let points = s.points.enumerated().filter { $0.element.x.isFinite && $0.element.y.isFinite }
            switch s.style {
            case .line:
                let text = points.map { "\(f(x($0.element.x))),\(f(y($0.element.y)))" }.joined(separator: " ")
                if !text.isEmpty { out += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(text)\"/>\n" }
            case .points:
                for (i, p) in points {
                    out += "<circle cx=\"\(f(x(p.x)))\" cy=\"\(f(y(p.y)))\" r=\"3.5\" fill=\"\(s.color)\"/>\n"
                    if let label = s.pointLabels?[i] {
                        out += "<text x=\"\(f(x(p.x) + 6))\" y=\"\(f(y(p.y) - 6))\" fill=\"\(s.color)\">\(esc(label))</text>\n"
                    }
                }
            }
        }
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            out += "<text x=\"\(f(width - right - 150))\" y=\"\(f(top + 10 + 16 * Double(i)))\" fill=\"\(s.color)\">\(s.style == .line ? "—" : "●") \(esc(s.label))</text>\n"
        }
        return out + "</svg>\n"
    }
}
