import Foundation
import LQFormats
import LQModel
import LQTensor

/// distill.teacher_cache: the teacher's next-token distribution at every position of every
/// sequence a run will see, computed once so later runs on the same data need no teacher forward
/// (xTuring's cachedistillationoutputs.py, compactly). Each position keeps its top-k vocabulary
/// entries with their log-probabilities under the full normaliser (the KL is then the sum over that
/// support: the teacher's remaining mass is left out), or, with top_k 0, the full logits in fp16.
/// Sequences are stored with their tokens and found by them, so a run whose data or batching
/// changed can never read another sequence's targets; the file also carries the teacher's weights
/// fingerprint, k and the layout version, and a cache that differs in any of them is rebuilt.
public final class TeacherCache: Teacher {
    static let version = "1"
    static let fileName = "teacher-cache.safetensors"

    let file: SafeTensorsFile
    let topK: Int, vocab: Int
    /// Sequence tokens → its first row in the stored arrays.
    let rowOf: [[Int]: Int]
    /// The rows of the batch being distilled: one start row per sequence (set by `select`).
    var batchStarts: [Int] = [], batchLength = 0

    /// What a cache must match to be used.
    struct Identity: Equatable {
        var teacher: String, topK: Int, vocab: Int
        var metadata: [String: String] { ["format": "lqlora-teacher-cache", "version": TeacherCache.version, "teacher": teacher,
                                          "top_k": String(topK), "vocab": String(vocab)] }
    }

    init(path: String, identity: Identity) throws {
        file = try SafeTensorsFile(path: path)
        guard let m = file.metadata, m == identity.metadata else {
            throw TrainingError.teacherMismatch(path: path, detail: "was made for another teacher, top_k or layout")
        }
        topK = identity.topK
        vocab = identity.vocab
        let tokens = try Self.integers(file, "tokens"), offsets = try Self.integers(file, "offsets")
        func bad(_ detail: String) -> TrainingError { .badCheckpoint(path: path, detail: detail) }
        guard offsets.first == 0, offsets.last == tokens.count, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw bad("offsets do not cut the \(tokens.count) tokens into sequences")
        }
        // The distribution tensors, checked once so that reading a row cannot fail.
        let k = identity.topK, vocab = identity.vocab, rows = tokens.count
        let expected: [(String, DType, [Int])] = k > 0 ? [("indices", .i32, [rows, k]), ("logprobs", .f32, [rows, k])] : [("logits", .f16, [rows, vocab])]
        for (name, dtype, shape) in expected {
            guard let e = try? file.entry(name), e.dtype == dtype, e.shape == shape else {
                throw bad("tensor \(name) must be \(dtype.rawValue) \(shape)")
            }
        }
        if k > 0, let outside = file.bytes(of: try file.entry("indices")).bindMemory(to: Int32.self).first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw bad("holds vocabulary index \(outside) outside 0..<\(vocab)")
        }
        var rowOf: [[Int]: Int] = [:]
        for s in 0..<(offsets.count - 1) { rowOf[Array(tokens[offsets[s]..<offsets[s + 1]])] = offsets[s] }
        self.rowOf = rowOf
    }

    /// The cache at `directory` for these sequences, building it (or rebuilding a stale or
    /// incomplete one) from `teacher()` first; `log` says which.
    public static func open(directory: String, teacher teacherPath: String, topK: Int, vocab: Int, sequences: [[Int]],
                     loadTeacher: () throws -> LlamaModel, log: (String) -> Void) throws -> TeacherCache {
        guard topK <= vocab else {
            throw TrainingError.teacherMismatch(path: teacherPath, detail: "distill.cache_top_k \(topK) is larger than the vocabulary (\(vocab))")
        }
        let identity = Identity(teacher: try fingerprint(teacherPath), topK: topK, vocab: vocab)
        let path = directory + "/" + fileName
        if FileManager.default.fileExists(atPath: path) {
            if let cache = try? TeacherCache(path: path, identity: identity), sequences.allSatisfy({ cache.rowOf[$0] != nil }) { return cache }
            log("\(path) is for another teacher, top_k or data: rebuilding it")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try build(sequences: sequences, teacher: try loadTeacher(), identity: identity, to: path)
        return try TeacherCache(path: path, identity: identity)
    }

    /// The CRC-32 of every weights file of a model directory.
    static func fingerprint(_ directory: String) throws -> String {
        try Checkpoint(path: directory).files.map { "\(($0.path as NSString).lastPathComponent):\(String(crc32($0.mapping.bytes), radix: 16))" }
            .joined(separator: ",")
    }

    static func build(sequences: [[Int]], teacher: LlamaModel, identity: Identity, to path: String) throws {
        let k = identity.topK, vocab = identity.vocab
        var offsets = [0], tokens: [Int] = []
        for s in sequences {
            tokens += s
            offsets.append(tokens.count)
        }
        let rows = tokens.count
        var indices = [Int32](repeating: 0, count: k > 0 ? rows * k : 0), logp = [Float](repeating: 0, count: k > 0 ? rows * k : 0)
        var logits = [Float16](repeating: 0, count: k > 0 ? 0 : rows * vocab)
        for (s, seq) in sequences.enumerated() {
            let live = LiveTeacher(model: teacher, tokens: [seq])
            let chunk = max(1, (1 << 22) / vocab)
            for r0 in stride(from: 0, to: seq.count, by: chunk) {
                let r1 = min(seq.count, r0 + chunk)
                guard case let .logits(t) = live.distribution(rows: Array(r0..<r1)[...]) else { continue }
                for r in r0..<r1 {
                    let row = t.pointer + (r - r0) * vocab, out = offsets[s] + r
                    if k == 0 {
                        for j in 0..<vocab { logits[out * vocab + j] = Float16(row[j]) }
                    } else {
                        topEntries(row, vocab: vocab, k: k, indices: &indices[(out * k)..<((out + 1) * k)], logp: &logp[(out * k)..<((out + 1) * k)])
                    }
                }
            }
        }
        var tensors = [PendingTensor(name: "tokens", dtype: .i32, shape: [rows], bytes: bytes(tokens.map { Int32($0) })),
                       PendingTensor(name: "offsets", dtype: .i32, shape: [offsets.count], bytes: bytes(offsets.map { Int32($0) }))]
        if k > 0 {
            tensors.append(PendingTensor(name: "indices", dtype: .i32, shape: [rows, k], bytes: bytes(indices)))
            tensors.append(PendingTensor(name: "logprobs", dtype: .f32, shape: [rows, k], bytes: bytes(logp)))
        } else {
            tensors.append(PendingTensor(name: "logits", dtype: .f16, shape: [rows, vocab], bytes: bytes(logits)))
        }
        try SafeTensorsWriter.write(tensors, to: path, metadata: identity.metadata)
    }

    /// The k largest logits of a row (ties to the lower index) as log-probabilities.
    static func topEntries(_ row: UnsafeMutablePointer<Float>, vocab: Int, k: Int, indices: inout ArraySlice<Int32>, logp: inout ArraySlice<Float>) {
        var top = Array(0..<min(k, vocab)).sorted { (row[$0], $1) > (row[$1], $0) }
        for j in k..<vocab where row[j] > row[top[k - 1]] {
            var i = k - 1
            while i > 0 && row[j] > row[top[i - 1]] { top[i] = top[i - 1]; i -= 1 }
            top[i] = j
        }
        var peak = -Float.infinity
        for j in 0..<vocab { peak = max(peak, row[j]) }
        var total = 0.0
        for j in 0..<vocab { total += exp(Double(row[j] - peak)) }
        let lse = Double(peak) + log(total)
        for (e, j) in top.enumerated() {
            indices[indices.startIndex + e] = Int32(j)
            logp[logp.startIndex + e] = Float(Double(row[j]) - lse)
        }
    }

    static func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    static func integers(_ file: SafeTensorsFile, _ name: String) throws -> [Int] {
        let entry = try file.entry(name)
        guard entry.dtype == .i32 else { throw TrainingError.badCheckpoint(path: file.path, detail: "tensor \(name) is \(entry.dtype.rawValue), not I32") }
        return file.bytes(of: entry).bindMemory(to: Int32.self).map { Int($0) }
    }

    /// Points the cache at a batch: its sequences' real tokens (each must be in the cache).
    public func select(tokens: [[Int]], lengths: [Int]) throws {
        batchLength = tokens.first?.count ?? 0
        batchStarts = try zip(tokens, lengths).map { seq, n in
            guard let start = rowOf[Array(seq[0..<n])] else {
                throw TrainingError.badCheckpoint(path: file.path, detail: "holds no entry for a sequence of this run (the data or batching changed; delete it to rebuild)")
            }
            return start
        }
    }

    public func distribution(rows: ArraySlice<Int>) -> TeacherRows {
        let stored = rows.map { batchStarts[$0 / batchLength] + $0 % batchLength }
        if topK == 0 {
            let t = Tensor(uninitialized: [rows.count, vocab])
            let all = try! file.entry("logits"), base = file.bytes(of: all).bindMemory(to: Float16.self)
            for (k, r) in stored.enumerated() { for j in 0..<vocab { t.pointer[k * vocab + j] = Float(base[r * vocab + j]) } }
            return .logits(t)
        }
        let idx = file.bytes(of: try! file.entry("indices")).bindMemory(to: Int32.self)
        let lp = file.bytes(of: try! file.entry("logprobs")).bindMemory(to: Float.self)
        var indices: [Int32] = [], logp: [Float] = []
        indices.reserveCapacity(rows.count * topK)
        logp.reserveCapacity(rows.count * topK)
        for r in stored {
            indices += idx[(r * topK)..<((r + 1) * topK)]
            logp += lp[(r * topK)..<((r + 1) * topK)]
        }
        return .support(indices: indices, logProbabilities: logp, width: topK)
    }
}
