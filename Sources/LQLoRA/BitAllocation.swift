import Foundation

/// The bit-allocation problem of LQ-LoRA: pick one configuration per matrix to minimise the total
/// error subject to Σ bits ≤ budget. It is a multiple-choice knapsack (MCKP), solved exactly:
///
/// 1. Each class (matrix) keeps its Pareto front (weight up, error strictly down); nothing else
///    can be in an optimum.
/// 2. The LP relaxation is a greedy walk along the lower convex hulls of the fronts (Sinha–Zoltners):
///    hull edges by efficiency until the capacity is met. The edge that does not fit gives the
///    budget's Lagrange multiplier λ, and L(λ) = Σᵢ minⱼ (eᵢⱼ + λwᵢⱼ) − λC is the lower bound
///    (valid for any λ ≥ 0, so rounding in the hull cannot make it wrong).
/// 3. An incumbent: the LP's integer part, then the best single moves that fit the slack.
/// 4. Reduced-cost fixing: every solution x errs e(x) = L(λ) + Σᵢ rcᵢ(xᵢ) + λ·slack(x) with
///    rcᵢⱼ = eᵢⱼ + λwᵢⱼ − minₖ(eᵢₖ + λwᵢₖ) ≥ 0, so an item with L(λ) + rc ≥ the incumbent is in no
///    better solution. Usually a handful of classes keep more than one item.
/// 5. Dynamic programming over those classes (Pisinger's approach): states (weight, error) kept
///    only while Pareto-optimal and while their LP bound over the classes still to come beats the
///    incumbent; every state is also completed cheaply, which improves the incumbent as it goes.
///
/// Weights are integers (bits scaled by `Item.bitScale` times parameters), so feasibility is exact.
/// "Optimal" means no solution better by more than a relative `tolerance` (1e-9) exists; the search
/// itself looks for anything better by a relative 1e-12, so ties beyond rounding are resolved.
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
        /// Lower bound on the optimal error (the LP relaxation, or the error itself when proven).
        public let lowerBound: Double
        public let optimal: Bool
        /// States the exact search generated.
        public let nodes: Int
        public var gap: Double { max(0, error - lowerBound) }
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        /// Even the cheapest item of every class exceeds the capacity.
        case infeasible(minimumWeight: Int64, capacity: Int64)
        /// An error that is NaN or infinite, or a negative weight.
        case invalidItem(classIndex: Int, item: Int, error: Double, weight: Int64)

        public var description: String {
            switch self {
            case let .infeasible(minimum, capacity): return "the cheapest choice needs \(minimum) against a capacity of \(capacity)"
            case let .invalidItem(c, item, error, weight):
                return "item \(item) of class \(c) has error \(error) and weight \(weight): errors must be finite and weights non-negative"
            }
        }
    }

    /// The relative gap within which a solution counts as optimal.
    public static let tolerance = 1e-9
    /// The relative improvement the search still looks for (far above the rounding of a sum).
    static let searchTolerance = 1e-12

    /// A front item: its index in the class, weight and error.
    struct Point {
        var item: Int
        var w: Int64
        var e: Double
    }

    /// Solves min Σ error subject to Σ weight ≤ capacity, one item per class.
    public static func solve(_ classes: [[Item]], capacity: Int64, timeLimit: TimeInterval = 60) throws -> Solution {
        precondition(classes.allSatisfy { !$0.isEmpty }, "every class needs an item")
        for (c, items) in classes.enumerated() {
            if let j = items.firstIndex(where: { !$0.error.isFinite || $0.weight < 0 }) {
                throw Failure.invalidItem(classIndex: c, item: j, error: items[j].error, weight: items[j].weight)
            }
        }
        let deadline = Date().addingTimeInterval(timeLimit)
        let fronts = classes.map(paretoFront)
        let n = fronts.count
        let minWeight = fronts.reduce(Int64(0)) { $0 + $1[0].w }
        guard minWeight <= capacity else { throw Failure.infeasible(minimumWeight: minWeight, capacity: capacity) }

        let (lambda, anchor) = linearProgram(fronts, capacity: capacity)
        // Every item's reduced cost against its class's Lagrangian minimum, and the bound
        // L(λ) = Σ min (e + λw) − λC, each term taken relative to the anchor for precision.
        var reduced: [[Double]] = []
        reduced.reserveCapacity(n)
        var lowerBound = 0.0
        var room = capacity
        for (c, f) in fronts.enumerated() {
            let a = f[anchor[c]]
            let d = f.map { ($0.e - a.e) + lambda * Double($0.w - a.w) }
            let least = d.min()!
            reduced.append(d.map { max(0, $0 - least) })
            lowerBound += a.e + least
            room -= a.w
        }
        lowerBound -= lambda * Double(room)

        var best = incumbent(fronts, anchor: anchor, capacity: capacity)
        var bestError = zip(fronts, best).reduce(0.0) { $0 + $1.0[$1.1].e }
        func proven() -> Bool { bestError - lowerBound <= searchTolerance * abs(bestError) }
        if proven() {
            return solution(fronts, best, lowerBound: min(lowerBound, bestError), optimal: true, nodes: 0)
        }

        // Reduced-cost fixing: only items with L(λ) + rc below the incumbent can be in a better
        // solution. Rounds search the items with rc below a threshold τ that grows 4× a round
        // (each round's best tightens the next's fixing); the round whose threshold reaches the
        // incumbent's gap searches every item that can matter, which proves its result.
        var tau = (bestError - lowerBound) / 4096
        var nodes = 0
        while true {
            let cutoff = bestError - searchTolerance * abs(bestError)
            let threshold = min(cutoff, lowerBound + tau)
            let complete = threshold == cutoff
            var fixedW: Int64 = 0, fixedE = 0.0
            var fixed = best
            var core: [(cls: Int, points: [Point], rate: Double)] = []
            for (c, f) in fronts.enumerated() {
                // Never empty: the class's Lagrangian minimum has reduced cost 0, below any threshold.
                let kept = f.indices.filter { lowerBound + reduced[c][$0] < threshold }
                if kept.count > 1 {
                    // What moving weight in this class costs per unit, at the cheapest.
                    let m = kept.min { reduced[c][$0] < reduced[c][$1] }!
                    let rate = kept.filter { $0 != m }.map { reduced[c][$0] / Double(abs(f[$0].w - f[m].w)) }.min()!
                    core.append((c, kept.map { f[$0] }, rate))
                } else {
                    fixed[c] = kept[0]
                    fixedW += f[kept[0]].w
                    fixedE += f[kept[0]].e
                }
            }
            // The classes that move weight most cheaply first: what is left then is rigid, so the LP
            // bound over it is tight (Pisinger's core: the classes nearest the split).
            core.sort { ($0.rate, $0.cls) < ($1.rate, $1.cls) }
            let search = core.isEmpty ? SearchResult(best: nil, finished: true, nodes: 0)
                : dynamicProgram(core.map(\.points), capacity: capacity - fixedW, offset: fixedE, cutoff: bestError, deadline: deadline)
            nodes += search.nodes
            if let found = search.best, found.error < bestError {
                for (k, entry) in core.enumerated() { fixed[entry.cls] = fronts[entry.cls].firstIndex { $0.item == found.choice[k] }! }
                let error = zip(fronts, fixed).reduce(0.0) { $0 + $1.0[$1.1].e }
                if error < bestError { (best, bestError) = (fixed, error) }
            }
            if !search.finished { return solution(fronts, best, lowerBound: lowerBound, optimal: false, nodes: nodes) }
            if complete || proven() { return solution(fronts, best, lowerBound: bestError, optimal: true, nodes: nodes) }
            tau *= 4
        }
    }

    /// The answer in the caller's item indices (`choice` indexes the fronts).
    static func solution(_ fronts: [[Point]], _ choice: [Int], lowerBound: Double, optimal: Bool, nodes: Int) -> Solution {
        let picked = zip(fronts, choice).map { $0[$1] }
        return Solution(choice: picked.map(\.item), error: picked.reduce(0) { $0 + $1.e }, weight: picked.reduce(0) { $0 + $1.w },
                        lowerBound: lowerBound, optimal: optimal, nodes: nodes)
    }

    /// Weight ascending with error strictly descending (no other item is in any optimum);
    /// ties keep the earliest item.
    static func paretoFront(_ items: [Item]) -> [Point] {
        let order = items.indices.sorted { (items[$0].weight, items[$0].error, $0) < (items[$1].weight, items[$1].error, $1) }
        var front: [Point] = []
        for i in order where front.isEmpty || items[i].error < front[front.count - 1].e {
            front.append(Point(item: i, w: items[i].weight, e: items[i].error))
        }
        return front
    }

    /// The lower convex hull of a front, as indices into it.
    static func hull(_ f: [Point]) -> [Int] {
        var h: [Int] = []
        for (j, p) in f.enumerated() {
            while h.count >= 2 {
                let a = f[h[h.count - 2]], b = f[h[h.count - 1]]
                // Drop b if it lies on or above the segment a–p, judged by the same rounded slopes
                // that order the edges, so each class's edges come out in order of efficiency.
                if Edge(dw: b.w - a.w, save: a.e - b.e).slope <= Edge(dw: p.w - b.w, save: b.e - p.e).slope { h.removeLast() } else { break }
            }
            h.append(j)
        }
        return h
    }

    /// A hull edge: what it costs in weight and saves in error.
    struct Edge {
        var dw: Int64
        var save: Double
        var slope: Double { save / Double(dw) }
    }

    /// The LP relaxation: hull edges taken by efficiency while they fit. Returns the efficiency
    /// of the first that does not (the multiplier λ; 0 when all fit) and each class's point when
    /// the LP's fractional part is dropped (its integer part, which fits).
    static func linearProgram(_ fronts: [[Point]], capacity: Int64) -> (lambda: Double, floor: [Int]) {
        var edges: [(cls: Int, to: Int, edge: Edge)] = []
        var room = capacity
        var floor = [Int](repeating: 0, count: fronts.count)
        for (c, f) in fronts.enumerated() {
            let h = hull(f)
            room -= f[0].w
            for j in 1..<h.count { edges.append((c, h[j], Edge(dw: f[h[j]].w - f[h[j - 1]].w, save: f[h[j - 1]].e - f[h[j]].e))) }
        }
        edges.sort { ($0.edge.slope, $1.cls, $1.to) > ($1.edge.slope, $0.cls, $0.to) }
        for e in edges {
            if e.edge.dw > room { return (e.edge.slope, floor) }
            room -= e.edge.dw
            floor[e.cls] = e.to
        }
        return (0, floor)
    }

    /// A feasible solution near the LP's: its integer part, then the move of one class that saves most while fitting, repeated.
    static func incumbent(_ fronts: [[Point]], anchor: [Int], capacity: Int64) -> [Int] {
        var choice = anchor
        var used = zip(fronts, choice).reduce(Int64(0)) { $0 + $1.0[$1.1].w }
        while true {
            var move: (cls: Int, item: Int, save: Double)?
            for (c, f) in fronts.enumerated() {
                let cur = f[choice[c]]
                // Fronts are by weight: the heaviest item that fits errs least.
                var j = choice[c]
                while j + 1 < f.count && used - cur.w + f[j + 1].w <= capacity { j += 1 }
                if j > choice[c], move == nil || cur.e - f[j].e > move!.save { move = (c, j, cur.e - f[j].e) }
            }
            guard let m = move else { return choice }
            used += fronts[m.cls][m.item].w - fronts[m.cls][choice[m.cls]].w
            choice[m.cls] = m.item
        }
    }

    /// A state of the dynamic programme before dominance: weight, error, parent state, item.
    struct Candidate {
        var w: Int64
        var e: Double
        var prev: Int32
        var item: Int32
    }

    /// Two lists sorted by (weight, error) as one.
    static func merge(_ a: [Candidate], _ b: [Candidate]) -> [Candidate] {
        var out: [Candidate] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if (a[i].w, a[i].e) <= (b[j].w, b[j].e) { out.append(a[i]); i += 1 } else { out.append(b[j]); j += 1 }
        }
        out.append(contentsOf: a[i...])
        out.append(contentsOf: b[j...])
        return out
    }

    struct SearchResult {
        /// The best solution found below the cutoff, as item indices per class, if any.
        var best: (choice: [Int], error: Double)?
        var finished: Bool
        var nodes: Int
    }

    /// Exact search over classes of candidate points (each by weight ascending, a Pareto front),
    /// for a solution erring less than `cutoff`: dynamic programming over Pareto-optimal states,
    /// each bounded by the LP over the classes still to come.
    static func dynamicProgram(_ classes: [[Point]], capacity: Int64, offset: Double, cutoff: Double, deadline: Date) -> SearchResult {
        let n = classes.count
        // For each suffix k: the lightest items' weight and error, and the hull edges of its
        // classes by efficiency with prefix sums, so an LP bound costs one binary search.
        struct Suffix {
            var baseW: Int64 = 0
            var baseE = 0.0
            var cumW: [Int64] = [0]
            var cumSave: [Double] = [0]
            var slope: [Double] = []
        }
        var suffixes = [Suffix](repeating: Suffix(), count: n + 1)
        var edges: [Edge] = []
        for k in stride(from: n - 1, through: 0, by: -1) {
            let f = classes[k], h = hull(f)
            var mine = (1..<h.count).map { Edge(dw: f[h[$0]].w - f[h[$0 - 1]].w, save: f[h[$0 - 1]].e - f[h[$0]].e) }
            // Merge the class's edges (already by efficiency) into the rest's, this class first
            // on ties: the order of sorting by (efficiency descending, class, edge).
            var merged: [Edge] = []
            merged.reserveCapacity(edges.count + mine.count)
            var a = 0, b = 0
            while a < edges.count || b < mine.count {
                if b == mine.count || (a < edges.count && edges[a].slope > mine[b].slope) { merged.append(edges[a]); a += 1 } else { merged.append(mine[b]); b += 1 }
            }
            edges = merged
            mine.removeAll()
            var s = Suffix(baseW: suffixes[k + 1].baseW + f[0].w, baseE: suffixes[k + 1].baseE + f[0].e)
            s.cumW.reserveCapacity(edges.count + 1)
            s.cumSave.reserveCapacity(edges.count + 1)
            for e in edges {
                s.cumW.append(s.cumW[s.cumW.count - 1] + e.dw)
                s.cumSave.append(s.cumSave[s.cumSave.count - 1] + e.save)
                s.slope.append(e.slope)
            }
            suffixes[k] = s
        }
        var bestError = cutoff - searchTolerance * abs(cutoff)
        var bestAt: (layer: Int, state: Int)?
        var nodes = 0
        var stateW: [Int64] = [0], stateE: [Double] = [offset]
        var parents: [[(prev: Int32, item: Int32)]] = []
        for k in 0..<n {
            let f = classes[k], next = suffixes[k + 1]
            // One list per item: the states plus that item, by weight (states are by weight), each
            // bounded by the LP over the classes after this one. The LP's breakpoint only moves
            // down as the room shrinks, so it is walked, not searched.
            var lists: [[Candidate]] = []
            for j in 0..<f.count {
                var list: [Candidate] = []
                var at = next.cumW.count - 1
                for s in 0..<stateW.count {
                    let w = stateW[s] + f[j].w
                    let free = capacity - w - next.baseW
                    if free < 0 { break }  // states are by weight: the heavier ones fail too
                    while next.cumW[at] > free { at -= 1 }
                    var save = next.cumSave[at]
                    if at < next.slope.count { save += next.slope[at] * Double(free - next.cumW[at]) }
                    let e = stateE[s] + f[j].e
                    if e + next.baseE - save >= bestError { continue }
                    list.append(Candidate(w: w, e: e, prev: Int32(s), item: Int32(j)))
                }
                nodes += list.count
                if !list.isEmpty { lists.append(list) }
            }
            // Merged by (weight, error), keeping only states that err less than every lighter one.
            while lists.count > 1 {
                var paired: [[Candidate]] = []
                for i in stride(from: 0, to: lists.count, by: 2) {
                    paired.append(i + 1 < lists.count ? merge(lists[i], lists[i + 1]) : lists[i])
                }
                lists = paired
            }
            var nw: [Int64] = [], ne: [Double] = [], np: [(prev: Int32, item: Int32)] = []
            for c in lists.first ?? [] where ne.isEmpty || c.e < ne[ne.count - 1] {
                nw.append(c.w); ne.append(c.e); np.append((c.prev, c.item))
            }
            parents.append(np)
            stateW = nw; stateE = ne
            if nw.isEmpty { break }
            // Improve the incumbent with each state's completion by the rest's LP floor: its lightest
            // items plus the longest prefix of hull edges that fits (an integer solution, since each
            // class's edges come in its own order). The last layer's states are complete.
            var at = next.cumW.count - 1
            for s in 0..<nw.count {
                let free = capacity - nw[s] - next.baseW
                if free < 0 { break }
                while next.cumW[at] > free { at -= 1 }
                let total = ne[s] + next.baseE - next.cumSave[at]
                if total < bestError {
                    bestError = total - searchTolerance * abs(total)
                    bestAt = (k, s)
                }
            }
            if Date() > deadline { return SearchResult(best: bestAt.map { reconstruct($0) }, finished: false, nodes: nodes) }
        }
        return SearchResult(best: bestAt.map { reconstruct($0) }, finished: true, nodes: nodes)

        // The choice of a state at `layer` plus its completion by the rest's LP floor.
        func reconstruct(_ at: (layer: Int, state: Int)) -> (choice: [Int], error: Double) {
            var pick = [Int](repeating: 0, count: n)
            var s = at.state
            for k in stride(from: at.layer, through: 0, by: -1) {
                let p = parents[k][s]
                pick[k] = Int(p.item)
                s = Int(p.prev)
            }
            var used = (0...at.layer).reduce(Int64(0)) { $0 + classes[$1][pick[$1]].w }
            // The rest: lightest items, then whole hull edges by efficiency while they fit.
            var hulls: [Int: [Int]] = [:]
            var edges: [(k: Int, to: Int, edge: Edge)] = []
            for k in (at.layer + 1)..<max(at.layer + 1, n) {
                let h = hull(classes[k])
                hulls[k] = h
                used += classes[k][0].w
                for j in 1..<h.count { edges.append((k, j, Edge(dw: classes[k][h[j]].w - classes[k][h[j - 1]].w, save: classes[k][h[j - 1]].e - classes[k][h[j]].e))) }
            }
            edges.sort { ($0.edge.slope, $1.k, $1.to) > ($1.edge.slope, $0.k, $0.to) }
            for e in edges {
                if used + e.edge.dw > capacity { break }
                used += e.edge.dw
                pick[e.k] = hulls[e.k]![e.to]
            }
            let choice = (0..<n).map { classes[$0][pick[$0]].item }
            return (choice, (0..<n).reduce(offset) { $0 + classes[$1][pick[$1]].e })
        }
    }
}
