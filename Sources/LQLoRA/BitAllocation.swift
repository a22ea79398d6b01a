import Foundation

/// The bit-allocation problem of LQ-LoRA: pick one configuration per matrix to minimise the total
/// error subject to Σ bits ≤ budget. It is a multiple-choice knapsack; this solves it exactly by
/// dynamic programming over Pareto-optimal partial solutions, pruned with LP bounds (the LP
/// relaxation of a multiple-choice knapsack is a greedy walk along each class's lower convex hull)
/// and Lagrangian reduced costs, stopping at a time limit with the remaining gap reported.
/// "Optimal" means no solution better by more than a relative 1e-9 exists.
public enum BitAllocation {
    public struct Item: Sendable {
        public let error: Double
        /// Integer cost: bits × parameters × `bitScale`, exact for every grid configuration.
        public let weight: Int64
        public init(error: Double, weight: Int64) {
            self.error = error
            self.weight = weight
        }

        /// Bits per parameter are multiples of 2^-14 on the LQ-LoRA grid (b + b0/B0 + s/(B0·B1) with
        /// B0·B1 ≤ 2^14), so scaled by 2^14 every cost is an integer and the ILP is exact.
        public static let bitScale = 16384.0

        /// A matrix of `parameters` weights stored at `bitsPerParameter`, with `error`.
        public init(error: Double, bitsPerParameter: Double, parameters: Int64) {
            self.init(error: error, weight: Int64((bitsPerParameter * Self.bitScale).rounded()) * parameters)
        }

        /// The capacity that holds `parameters` weights at `budget` bits on average.
        public static func capacity(budget: Double, parameters: Int64) -> Int64 {
            Int64((budget * bitScale * Double(parameters)).rounded(.down))
        }

        /// A capacity back in average bits per parameter.
        public static func bits(capacity: Int64, parameters: Int64) -> Double {
            Double(capacity) / bitScale / Double(parameters)
        }
    }

    public struct Solution: Sendable {
        /// Index of the chosen item in each class.
        public let choice: [Int]
        public let error: Double
        public let weight: Int64
        /// Lower bound on the optimal error (the LP relaxation, or better when the search finished).
        public let lowerBound: Double
        public let optimal: Bool
        public let nodes: Int
        public var gap: Double { max(0, error - lowerBound) }
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        /// Even the cheapest item of every class exceeds the capacity.
        case infeasible(minimumWeight: Int64, capacity: Int64)

        public var description: String {
            switch self {
            case let .infeasible(minimum, capacity): return "the cheapest choice needs \(minimum) against a capacity of \(capacity)"
            }
        }
    }

    typealias Front = [(item: Int, w: Int64, e: Double)]

    /// Solves min Σ error subject to Σ weight ≤ capacity, one item per class.
    public static func solve(_ classes: [[Item]], capacity: Int64, timeLimit: TimeInterval = 60) throws -> Solution {
        precondition(classes.allSatisfy { !$0.isEmpty }, "every class needs an item")
        // Pareto fronts: weight ascending with error strictly descending (others never help).
        var fronts: [Front] = []
        for items in classes {
            let sorted = items.enumerated().sorted { ($0.element.weight, $0.element.error) < ($1.element.weight, $1.element.error) }
            var front: [(Int, Int64, Double)] = []
            for (i, it) in sorted where front.isEmpty || it.error < front.last!.2 {
                if let last = front.last, last.1 == it.weight { front.removeLast() }
                front.append((i, it.weight, it.error))
            }
            fronts.append(front)
        }
        let minWeight = fronts.reduce(Int64(0)) { $0 + $1[0].w }
        guard minWeight <= capacity else { throw Failure.infeasible(minimumWeight: minWeight, capacity: capacity) }
        // A first pass finds the LP bound, its multiplier λ and a greedy incumbent; items whose
        // Lagrangian reduced cost lifts that bound above the incumbent cannot be in a better
        // solution (error ≥ LP + rc), so the exact search runs on what is left.
        let first = search(fronts, capacity: capacity, timeLimit: 0)
        var reduced: [Front] = []
        for f in fronts {
            let best = f.map { $0.e + first.lambda * Double($0.w) }.min()!
            let kept = f.filter { $0.e + first.lambda * Double($0.w) - best + first.lowerBound < first.error * (1 - 1e-12) }
            reduced.append(kept.isEmpty ? [f[0]] : kept)
        }
        // Keep each class's chosen incumbent item so the incumbent stays reachable.
        for (c, f) in fronts.enumerated() where !reduced[c].contains(where: { $0.item == first.choice[c] }) {
            if let item = f.first(where: { $0.item == first.choice[c] }) { reduced[c] = (reduced[c] + [item]).sorted { $0.w < $1.w } }
        }
        let full = search(reduced, capacity: capacity, timeLimit: timeLimit, incumbent: first)
        return Solution(choice: full.choice, error: full.error, weight: full.weight, lowerBound: max(full.lowerBound, first.lowerBound),
                        optimal: full.optimal, nodes: full.nodes)
    }

    struct SearchResult {
        let choice: [Int]
        let error: Double
        let weight: Int64
        let lowerBound: Double
        let lambda: Double
        let optimal: Bool
        let nodes: Int
    }

    /// Branch and bound on Pareto fronts (items referenced by their original index).
    static func search(_ fronts: [Front], capacity: Int64, timeLimit: TimeInterval, incumbent: SearchResult? = nil) -> SearchResult {
        let n = fronts.count
        let minWeight = fronts.reduce(Int64(0)) { $0 + $1[0].w }

        // Lower convex hull of each front: the LP relaxation only ever uses hull points.
        func hull(_ f: [(item: Int, w: Int64, e: Double)]) -> [(w: Int64, e: Double)] {
            var h: [(w: Int64, e: Double)] = []
            for p in f {
                while h.count >= 2 {
                    let a = h[h.count - 2], b = h[h.count - 1]
                    // Drop b if it lies on or above the segment a–p.
                    let lhs = (b.e - a.e) * Double(p.w - a.w), rhs = (p.e - a.e) * Double(b.w - a.w)
                    if lhs >= rhs { h.removeLast() } else { break }
                }
                h.append((p.w, p.e))
            }
            return h
        }
        // Classes ordered by how much their choice matters, so good incumbents come early.
        let order = (0..<n).sorted { (fronts[$0][0].e - fronts[$0].last!.e) > (fronts[$1][0].e - fronts[$1].last!.e) }
        let hulls = order.map { hull(fronts[$0]) }

        // For each suffix k of `order`: the base (cheapest items) and its hull upgrades sorted by
        // efficiency, with prefix sums, so an LP bound costs one binary search.
        struct Suffix { var baseW: Int64; var baseE: Double; var cumW: [Int64]; var cumSave: [Double]; var slope: [Double] }
        var suffixes = [Suffix](repeating: Suffix(baseW: 0, baseE: 0, cumW: [0], cumSave: [0], slope: []), count: n + 1)
        var edges: [(dw: Int64, save: Double)] = []
        for k in stride(from: n - 1, through: 0, by: -1) {
            let h = hulls[k]
            if h.count > 1 { for j in 1..<h.count { edges.append((h[j].w - h[j - 1].w, h[j - 1].e - h[j].e)) } }
            edges.sort { $0.save / Double($0.dw) > $1.save / Double($1.dw) }
            var s = Suffix(baseW: suffixes[k + 1].baseW + h[0].w, baseE: suffixes[k + 1].baseE + h[0].e, cumW: [0], cumSave: [0], slope: [])
            for e in edges {
                s.cumW.append(s.cumW.last! + e.dw)
                s.cumSave.append(s.cumSave.last! + e.save)
                s.slope.append(e.save / Double(e.dw))
            }
            suffixes[k] = s
        }
        /// The slope of the LP's fractional upgrade at the root: the Lagrange multiplier of the budget.
        func lambda(_ cap: Int64) -> Double {
            let s = suffixes[0]
            let room = cap - s.baseW
            var lo = 0, hi = s.cumW.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if s.cumW[mid] <= room { lo = mid } else { hi = mid - 1 }
            }
            return lo < s.slope.count ? s.slope[lo] : 0
        }
        func lpBound(_ k: Int, _ cap: Int64) -> Double {
            let s = suffixes[k]
            let room = cap - s.baseW
            if room < 0 { return .infinity }
            // Largest prefix of upgrades that fits, plus a fraction of the next one.
            var lo = 0, hi = s.cumW.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if s.cumW[mid] <= room { lo = mid } else { hi = mid - 1 }
            }
            var save = s.cumSave[lo]
            if lo < s.slope.count { save += s.slope[lo] * Double(room - s.cumW[lo]) }
            return s.baseE - save
        }
        let root = lpBound(0, capacity)

        // Incumbent: greedy upgrades along the fronts by efficiency, whole items only.
        var choice = fronts.map { _ in 0 }
        var used = minWeight
        while true {
            var best: (cls: Int, idx: Int, ratio: Double)?
            for c in 0..<n {
                let f = fronts[c], cur = choice[c]
                for j in (cur + 1)..<f.count where used - f[cur].w + f[j].w <= capacity {
                    let ratio = (f[cur].e - f[j].e) / Double(f[j].w - f[cur].w)
                    if best == nil || ratio > best!.ratio { best = (c, j, ratio) }
                }
            }
            guard let b = best else { break }
            used += fronts[b.cls][b.idx].w - fronts[b.cls][choice[b.cls]].w
            choice[b.cls] = b.idx
        }
        var bestError = (0..<n).reduce(0.0) { $0 + fronts[$1][choice[$1]].e }
        var bestChoice = choice
        if let incumbent, incumbent.error < bestError {
            // Map the incumbent's original item indices onto these fronts.
            let mapped = (0..<n).map { c in fronts[c].firstIndex { $0.item == incumbent.choice[c] } }
            if mapped.allSatisfy({ $0 != nil }) {
                bestChoice = mapped.map { $0! }
                bestError = incumbent.error
            }
        }
        if timeLimit <= 0 {
            let weight = (0..<n).reduce(Int64(0)) { $0 + fronts[$1][bestChoice[$1]].w }
            return SearchResult(choice: (0..<n).map { fronts[$0][bestChoice[$0]].item }, error: bestError, weight: weight,
                                lowerBound: root, lambda: lambda(capacity), optimal: false, nodes: 0)
        }

        // Dynamic programming over classes in `order`, keeping only states (weight, error) that are
        // Pareto-optimal and whose LP bound can still beat the incumbent (dominance + bounding).
        let deadline = Date().addingTimeInterval(timeLimit)
        var nodes = 0, finished = true
        var minSuffixW = [Int64](repeating: 0, count: n + 1)
        for k in stride(from: n - 1, through: 0, by: -1) { minSuffixW[k] = minSuffixW[k + 1] + fronts[order[k]][0].w }
        // Solutions within a relative 1e-9 of the incumbent are not worth proving better.
        let relativeTolerance = 1e-9
        var stateW: [Int64] = [0], stateE: [Double] = [0]
        var parents: [[(prev: Int32, item: Int32)]] = []
        for k in 0..<n {
            let f = fronts[order[k]]
            let cutoff = bestError - relativeTolerance * abs(bestError)
            var candidates: [(w: Int64, e: Double, prev: Int32, item: Int32)] = []
            candidates.reserveCapacity(stateW.count * f.count)
            for s in 0..<stateW.count {
                for j in 0..<f.count {
                    let w = stateW[s] + f[j].w
                    let rest = capacity - w
                    if rest < minSuffixW[k + 1] { break }  // items are by weight: heavier ones fail too
                    let e = stateE[s] + f[j].e
                    if e + lpBound(k + 1, rest) >= cutoff { continue }
                    candidates.append((w, e, Int32(s), Int32(j)))
                }
            }
            nodes += candidates.count
            candidates.sort { ($0.w, $0.e) < ($1.w, $1.e) }
            var nw: [Int64] = [], ne: [Double] = [], np: [(prev: Int32, item: Int32)] = []
            for c in candidates where ne.isEmpty || c.e < ne[ne.count - 1] {
                if let last = nw.last, last == c.w { continue }
                nw.append(c.w); ne.append(c.e); np.append((c.prev, c.item))
            }
            if nw.isEmpty || Date() > deadline {
                // Nothing can beat the incumbent (it is optimal), or time ran out.
                finished = nw.isEmpty
                stateW = []
                break
            }
            stateW = nw; stateE = ne
            parents.append(np)
        }
        if !stateW.isEmpty, let best = stateE.indices.min(by: { stateE[$0] < stateE[$1] }), stateE[best] < bestError {
            bestError = stateE[best]
            var s = best
            for k in stride(from: n - 1, through: 0, by: -1) {
                let p = parents[k][s]
                bestChoice[order[k]] = Int(p.item)
                s = Int(p.prev)
            }
        }
        let weight = (0..<n).reduce(Int64(0)) { $0 + fronts[$1][bestChoice[$1]].w }
        return SearchResult(choice: (0..<n).map { fronts[$0][bestChoice[$0]].item }, error: bestError, weight: weight,
                            lowerBound: finished ? bestError : root, lambda: lambda(capacity), optimal: finished, nodes: nodes)
    }
}
