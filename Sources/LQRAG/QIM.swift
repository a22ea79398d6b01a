/// The Quantized Influence Measure of Rangan & Yin ("A Fine-tuning Enhanced RAG System with
/// Quantized Influence Measure as AI Judge", 2024), as their `quantized_influence(arr1, arr2)`
/// computes it with the query's embedding as arr1 and a passage's as arr2: both quantized to k
/// levels; the query's levels split the coordinates into groups S; the score is
/// Σ_S (mean(y[S]) − mean(y))² · |S|² / (n · std(y)), y the passage's levels, std with ddof 0.
/// It measures how well the query's pattern of levels predicts the passage's.
public enum QIM {
    public static let defaultLevels = 16

    /// round((v − min) / (max − min) · (k − 1)), rounding half to even as numpy's round does; a
    /// constant vector (where the reference divides by zero) is all level 0.
    public static func quantize<C: Collection>(_ v: C, levels k: Int) -> [Int] where C.Element == Float {
        guard let lo = v.min(), let hi = v.max(), hi > lo else { return [Int](repeating: 0, count: v.count) }
        let (low, range) = (Double(lo), Double(hi) - Double(lo))
        return v.map { Int(((Double($0) - low) / range * Double(k - 1)).rounded(.toNearestOrEven)) }
    }

    /// The measure of `passage` given `query` (vectors of one length). A passage whose levels are
    /// all equal (std 0, where the reference divides by zero) scores 0: nothing varies to predict.
    public static func score<Q: Collection, P: Collection>(query: Q, passage: P, levels k: Int = defaultLevels) -> Double
    where Q.Element == Float, P.Element == Float {
        precondition(query.count == passage.count && !query.isEmpty, "QIM compares two vectors of one length")
        let x = quantize(query, levels: k), y = quantize(passage, levels: k)
        let n = Double(y.count)
        let mean = Double(y.reduce(0, +)) / n
        let variance = y.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
        guard variance > 0 else { return 0 }
        // Per level of the query: the passage's sum and count there.
        var sums = [Int](repeating: 0, count: k), counts = [Int](repeating: 0, count: k)
        for (u, v) in zip(x, y) {
            sums[u] += v
            counts[u] += 1
        }
        var total = 0.0
        for u in 0..<k where counts[u] > 0 {
            let size = Double(counts[u]), deviation = Double(sums[u]) / size - mean
            total += deviation * deviation * size * size
        }
        return total / (n * variance.squareRoot())
    }
}
