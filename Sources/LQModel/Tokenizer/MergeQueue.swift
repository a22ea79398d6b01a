/// Byte-pair merging in O(n log n): symbols in a linked list, candidate pairs in a min-heap by
/// (rank, position); a popped pair still current is merged and its new neighbours queued. Equal
/// ranks merge left to right, as huggingface/tokenizers does.
enum MergeQueue {
    struct Candidate: Comparable {
        let rank: Int
        let left: Int  // index of the left symbol
        let leftID: Int, rightID: Int, merged: Int
        static func < (a: Candidate, b: Candidate) -> Bool { (a.rank, a.left) < (b.rank, b.left) }
    }

    /// Applies `merges` ((left id, right id) → (rank, merged id)) to `ids`.
    static func apply(_ ids: [Int], merges: [Int64: (rank: Int, id: Int)]) -> [Int] {
        let n = ids.count
        if n < 2 { return ids }
        var symbol = ids
        var next = Array(1...n).map { $0 < n ? $0 : -1 }
        var prev = (0..<n).map { $0 - 1 }
        var alive = [Bool](repeating: true, count: n)
        var heap: [Candidate] = []
        func push(_ l: Int) {
            let r = next[l]
            guard r >= 0, let m = merges[Int64(symbol[l]) << 32 | Int64(symbol[r])] else { return }
            heap.append(Candidate(rank: m.rank, left: l, leftID: symbol[l], rightID: symbol[r], merged: m.id))
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                if heap[i] < heap[p] { heap.swapAt(i, p); i = p } else { break }
            }
        }
        func pop() -> Candidate {
            let top = heap[0]
            heap[0] = heap[heap.count - 1]
            heap.removeLast()
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l] < heap[m] { m = l }
                if r < heap.count && heap[r] < heap[m] { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
            return top
        }
        for i in 0..<(n - 1) { push(i) }
        while !heap.isEmpty {
            let c = pop()
            let l = c.left
            let r = next[l]
            // Stale: a symbol changed or disappeared since this pair was queued.
            guard alive[l], r >= 0, symbol[l] == c.leftID, symbol[r] == c.rightID else { continue }
            symbol[l] = c.merged
            alive[r] = false
            next[l] = next[r]
            if next[r] >= 0 { prev[next[r]] = l }
            if prev[l] >= 0 { push(prev[l]) }
            push(l)
        }
        var out: [Int] = []
        var i = 0
        while i >= 0 {
            out.append(symbol[i])
            i = next[i]
        }
        return out
    }
}
