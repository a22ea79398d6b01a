/// PyTorch's float32 `sum` on CPU, reproduced operation for operation (aten's cascade_sum:
/// 8-lane vector accumulators, 4-way interleaving, a 4-level cascade, then the scalar tail and
/// the lanes in order), so that bitsandbytes' double-quantization offset `absmax.mean()` comes out
/// bit for bit. PyTorch splits sums of 32,768 or more values across threads, which changes its
/// rounding with the thread count; this follows its single-thread order.
enum TorchSum {
    static let lanes = 8

    static func mean(_ x: [Float]) -> Float {
        x.isEmpty ? .nan : sum(x) / Float(x.count)
    }

    static func sum(_ x: [Float]) -> Float {
        let n = x.count
        if n < lanes { return rowSum(count: n) { x[$0] } }
        let vectors = n / lanes
        var laneSums = [Float](repeating: 0, count: lanes)
        for l in 0..<lanes { laneSums[l] = rowSum(count: vectors) { x[$0 * lanes + l] } }
        var total: Float = 0
        for k in (vectors * lanes)..<n { total += x[k] }
        for l in 0..<lanes { total += laneSums[l] }
        return total
    }

    /// aten's row_sum: the row viewed as (−1, 4), summed by multi_row_sum, remainder into column 0.
    private static func rowSum(count: Int, _ value: (Int) -> Float) -> Float {
        let ilp = 4
        let rows = count / ilp
        var partial = multiRowSum(rows: rows, columns: ilp) { i, k in value(i * ilp + k) }
        for i in (rows * ilp)..<count { partial[0] += value(i) }
        for k in 1..<ilp { partial[0] += partial[k] }
        return partial[0]
    }

    /// aten's multi_row_sum: per-column accumulators in a 4-level cascade for accuracy.
    private static func multiRowSum(rows size: Int, columns: Int, _ value: (Int, Int) -> Float) -> [Float] {
        let levels = 4
        let ceilLog2 = size <= 2 ? 1 : (Int.bitWidth - (size - 1).leadingZeroBitCount)
        let levelPower = max(4, ceilLog2 / levels)
        let levelStep = 1 << levelPower
        let levelMask = levelStep - 1
        var acc = [[Float]](repeating: [Float](repeating: 0, count: columns), count: levels)
        var i = 0
        while i + levelStep <= size {
            for _ in 0..<levelStep {
                for k in 0..<columns { acc[0][k] += value(i, k) }
                i += 1
            }
            for j in 1..<levels {
                for k in 0..<columns {
                    acc[j][k] += acc[j - 1][k]
                    acc[j - 1][k] = 0
                }
                if i & (levelMask << (j * levelPower)) != 0 { break }
            }
        }
        while i < size {
            for k in 0..<columns { acc[0][k] += value(i, k) }
            i += 1
        }
        for j in 1..<levels { for k in 0..<columns { acc[0][k] += acc[j][k] } }
        return acc[0]
    }
}
