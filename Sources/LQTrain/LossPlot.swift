import Foundation
import LQFormats

/// A loss curve as a self-contained SVG: training loss per step, validation loss as points.
public enum LossPlot {
    public static func svg(train: [(step: Int, loss: Double)], valid: [(step: Int, loss: Double)], title: String) -> String {
        SVGPlot.svg(series: [.init(label: "train loss", color: "#1f77b4", style: .line, points: train.map { (Double($0.step), $0.loss) }),
                             .init(label: "validation loss", color: "#d62728", style: .points, points: valid.map { (Double($0.step), $0.loss) })],
                    title: title, x: .init(label: "step", fromZero: true), yLabel: "loss")
    }
}
