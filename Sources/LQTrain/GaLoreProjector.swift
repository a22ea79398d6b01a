import Foundation
import LQFormats
import LQQuant
import LQTensor

/// GaLore's projection of one weight's gradient G [m, n] onto a rank-r subspace, with Q-GaLore's
/// lazy refresh and optional low-bit storage (VITA-Group/Q-GaLore, q_galore_projector.py,
/// proj_type "std"). On a refresh, the SVD of G in fp32: for m ≥ n, P = Vᵀ[:r] [r, n] and the
/// low-rank gradient is G·Pᵀ [m, r]; otherwise P = U[:, :r] [m, r] and it is Pᵀ·G [r, n]; an update
/// U comes back as U·P or P·U, times `scale`. Refreshes happen at iterations where
/// iteration % gap == 0; after each one the cosine between the previous and the new first singular
/// vector joins a queue of `queueSize`, and once the queue is full and its mean is at least
/// `threshold`, gap becomes ⌊gap·gamma⌋ (the queue is not cleared, as in the reference, so the gap
/// can grow at every later refresh).
///
/// One departure, for reproducibility: each singular vector's sign is fixed so that its entry of
/// largest magnitude (the first such) is positive, where the reference keeps whatever sign LAPACK
/// returns (which differs between LAPACK builds, and flips the cosine the lazy schedule reads).
public final class GaLoreProjector {
    public enum Side: String, Sendable { case right, left }

    /// How the projection matrix is kept between refreshes.
    public enum Storage: Sendable, Equatable {
        case full
        /// Group codes of `bits` over `groupSize` consecutive values of P's row-major layout,
        /// dequantized at each use (Q-GaLore's INT4 projection).
        case quantized(bits: Int, groupSize: Int)
    }

    public struct Schedule: Sendable, Equatable {
        public var gap: Int, queueSize: Int, threshold: Double, gamma: Double
        public init(gap: Int, queueSize: Int, threshold: Double, gamma: Double) {
            self.gap = gap
            self.queueSize = queueSize
            self.threshold = threshold
            self.gamma = gamma
        }
    }

    public let rows: Int, cols: Int, rank: Int
    public let side: Side
    public let scale: Float
    public let storage: Storage
    let schedule: Schedule
    /// The current refresh interval.
    public private(set) var gap: Int
    /// Cosines between consecutive first singular vectors, oldest first.
    public private(set) var queue: [Float] = []
    /// The iterations at which the SVD ran.
    public private(set) var refreshes: [Int] = []
    /// The first singular vector of the last refresh (unquantized).
    private(set) var firstVector: [Float] = []
    private var dense: Tensor?
    /// P's codes, when stored quantized.
    public private(set) var codes: GroupQuantizedMatrix?

    public init(rows: Int, cols: Int, rank: Int, scale: Float, schedule: Schedule, storage: Storage) {
        precondition(rank >= 1 && rank < min(rows, cols), "a GaLore rank lies below min(m, n)")
        self.rows = rows
        self.cols = cols
        self.rank = rank
        self.scale = scale
        self.schedule = schedule
        self.storage = storage
        gap = schedule.gap
        side = rows >= cols ? .right : .left
    }

    /// P's shape: [r, n] on the right, [m, r] on the left.
    public var projectionShape: [Int] { side == .right ? [rank, cols] : [rows, rank] }
    /// The low-rank gradient's shape: [m, r] or [r, n].
    public var lowRankShape: [Int] { side == .right ? [rows, rank] : [rank, cols] }

    /// P as the products use it (dequantized when stored in codes).
    public var projection: Tensor {
        if let codes { return codes.dequantized() }
        return dense!
    }

    /// The low-rank gradient of `g` [m, n] at `iteration`, refreshing P first when it is due.
    public func project(_ g: Tensor, iteration: Int) throws -> Tensor {
        precondition(g.shape == [rows, cols], "a projector for [\(rows), \(cols)] got a gradient \(g.shape)")
        if (dense == nil && codes == nil) || iteration % gap == 0 { try refresh(g, iteration: iteration) }
        let p = projection
        return side == .right ? matmul(g, p, transposeB: true) : matmul(p, transposeA: true, g)
    }

    /// A low-rank update back in the weight's space, times `scale`.
    public func projectBack(_ update: Tensor) -> Tensor {
        precondition(update.shape == lowRankShape, "a projector's update must be \(lowRankShape), not \(update.shape)")
        let p = projection
        let full = side == .right ? matmul(update, p) : matmul(p, update)
        let s = scale
        Parallel.forEach(full.count, minChunk: 1 << 15) { r in for i in r { full.pointer[i] *= s } }
        return full
    }

    func refresh(_ g: Tensor, iteration: Int) throws {
        let d = try svd(g)
        let p: Tensor
        switch side {
        case .right: p = d.vt.rows(0..<rank).copy()
        case .left: p = d.u.block(rows: 0..<rows, cols: 0..<rank).toTensor()
        }
        Self.fixSigns(p, vectorsAreRows: side == .right)
        let first = side == .right ? Array(p.buffer[0..<cols]) : (0..<rows).map { p.pointer[$0 * rank] }
        if !firstVector.isEmpty {
            if queue.count == schedule.queueSize { queue.removeFirst() }
            queue.append(Self.cosine(firstVector, first))
            let mean = queue.reduce(0.0) { $0 + Double($1) } / Double(schedule.queueSize)  // Python's sum(queue) / queue_size
            if queue.count == schedule.queueSize && mean >= schedule.threshold {
                gap = Int(Double(gap) * schedule.gamma)
            }
        }
        firstVector = first
        refreshes.append(iteration)
        switch storage {
        case .full: dense = p
        case let .quantized(bits, groupSize):
            codes = GroupQuantizedMatrix(p.pointer, rows: p.shape[0], cols: p.shape[1], bits: bits, groupSize: groupSize)
        }
    }

    /// Negates each singular vector (a row, or a column) whose entry of largest magnitude is negative.
    static func fixSigns(_ p: Tensor, vectorsAreRows: Bool) {
        let r = p.shape[0], c = p.shape[1]
        let (vectors, length) = vectorsAreRows ? (r, c) : (c, r)
        func at(_ k: Int, _ i: Int) -> Int { vectorsAreRows ? k * c + i : i * c + k }
        for k in 0..<vectors {
            var best = 0
            for i in 1..<length where abs(p.pointer[at(k, i)]) > abs(p.pointer[at(k, best)]) { best = i }
            if p.pointer[at(k, best)] < 0 { for i in 0..<length { p.pointer[at(k, i)] = -p.pointer[at(k, i)] } }
        }
    }

    /// torch.nn.functional.cosine_similarity of two vectors (each norm at least 1e-8), rounded to fp32.
    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        na = max(na.squareRoot(), 1e-8)
        nb = max(nb.squareRoot(), 1e-8)
        var dot = 0.0
        for (x, y) in zip(a, b) { dot += (Double(x) / na) * (Double(y) / nb) }
        return Float(dot)
    }

    /// Bytes held between steps: P (codes and group parameters, or fp32) and the first vector.
    public var stateBytes: Int { (codes?.storageBytes ?? (dense.map { 4 * $0.count } ?? 0)) + 4 * firstVector.count }

    // MARK: - Checkpoints

    /// The projector's tensors under `name` (P or its codes, the first vector, the cosine queue)
    /// and its scalars (gap, refresh iterations).
    func state(name: String) -> (tensors: [PendingTensor], scalars: [String: Any]) {
        var tensors: [PendingTensor] = []
        if !firstVector.isEmpty { tensors.append(PendingTensor(name: name + ".first_vector", tensor: Tensor(shape: [firstVector.count], values: firstVector))) }
        if !queue.isEmpty { tensors.append(PendingTensor(name: name + ".queue", tensor: Tensor(shape: [queue.count], values: queue))) }
        if let dense { tensors.append(PendingTensor(name: name + ".projection", tensor: dense)) }
        if let codes {
            tensors += [PendingTensor(name: name + ".projection.codes", dtype: .u8, shape: [codes.codes.count], bytes: codes.codes),
                        PendingTensor(name: name + ".projection.scales", tensor: Tensor(shape: [codes.scales.count], values: codes.scales)),
                        PendingTensor(name: name + ".projection.zeros", tensor: Tensor(shape: [codes.zeros.count], values: codes.zeros))]
        }
        return (tensors, ["gap": gap, "refreshes": refreshes])
    }

    func load(name: String, from reader: StateReader, scalars: [String: Any]) throws {
        guard let gap = scalars["gap"] as? Int, let refreshes = scalars["refreshes"] as? [Int] else {
            throw TrainingError.badCheckpoint(path: reader.file.path, detail: "has no projector state for \(name)")
        }
        self.gap = gap
        self.refreshes = refreshes
        (firstVector, queue, dense, codes) = ([], [], nil, nil)
        guard !refreshes.isEmpty else { return }  // saved before the first step
        firstVector = try reader.floats(name + ".first_vector", side == .right ? cols : rows)
        let queued = min(schedule.queueSize, refreshes.count - 1)
        if queued > 0 { queue = try reader.floats(name + ".queue", queued) }
        let shape = projectionShape, n = shape[0] * shape[1]
        switch storage {
        case .full:
            dense = Tensor(shape: shape, values: try reader.floats(name + ".projection", n))
        case let .quantized(bits, groupSize):
            let groups = (n + groupSize - 1) / groupSize
            codes = GroupQuantizedMatrix(rows: shape[0], cols: shape[1], bits: bits, groupSize: groupSize,
                                         codes: try reader.bytes(name + ".projection.codes", bits == 8 ? n : (n + 1) / 2),
                                         scales: try reader.floats(name + ".projection.scales", groups),
                                         zeros: try reader.floats(name + ".projection.zeros", groups))
        }
    }
}
