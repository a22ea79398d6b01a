/// Where the sequences of one forward pass lie: packed one after another in the activations'
/// rows (no padding: the projections act on rows and never see sequences), each starting at its
/// own position (after the positions its cache already holds). Only RoPE, the cache and attention
/// read it.
struct PassLayout {
    let lengths: [Int]
    /// The position of each sequence's first row.
    let starts: [Int]
    /// The row each sequence begins at.
    let offsets: [Int]
    let rows: Int

    init(lengths: [Int], starts: [Int]) {
        precondition(lengths.count == starts.count, "one start per sequence")
        self.lengths = lengths
        self.starts = starts
        var offsets: [Int] = [], rows = 0
        for n in lengths {
            offsets.append(rows)
            rows += n
        }
        self.offsets = offsets
        self.rows = rows
    }

    /// `batch` sequences of `length` rows, all starting at `start`: [batch·length] as a batch is laid out.
    static func uniform(batch: Int, length: Int, start: Int = 0) -> PassLayout {
        PassLayout(lengths: Array(repeating: length, count: batch), starts: Array(repeating: start, count: batch))
    }

    var batch: Int { lengths.count }
    /// One past the last position any sequence reaches.
    var positions: Int { zip(starts, lengths).map(+).max() ?? 0 }
    /// The rows of sequence b.
    func rows(of b: Int) -> Range<Int> { offsets[b]..<(offsets[b] + lengths[b]) }
}
