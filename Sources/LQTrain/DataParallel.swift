import Foundation
import LQDistributed
import LQFormats
import LQModel
import LQTensor

/// Why a configuration cannot train data-parallel, or why a data-parallel run stopped.
public enum DataParallelError: Error, CustomStringConvertible {
    case indivisible(ranks: Int, gradAccum: Int)
    case fullRankMethod(method: String)
    case teacherCache(path: String)
    case diverged(step: Int, ranks: [Int])

    public var description: String {
        switch self {
        case let .indivisible(ranks, accum):
            let next = (accum + ranks - 1) / ranks * ranks
            return "train.grad_accum is \(accum): a step's \(accum) micro-batches cannot be dealt evenly to \(ranks) ranks; "
                + "set it to a multiple of \(ranks) (e.g. --set train.grad_accum=\(next), with train.batch_size scaled to keep the effective batch) or run \(accum) ranks or a divisor of it"
        case let .fullRankMethod(method):
            return "method \(method) updates each matrix inside the backward pass as its gradient arrives, before the other ranks' "
                + "gradients could be added: it trains as one process (run it without mpirun)"
        case let .teacherCache(path):
            return "distill.teacher_cache \(path): ranks would build the cache at once; under mpirun leave it unset (each rank runs the teacher on its own micro-batches)"
        case let .diverged(step, ranks):
            return "after step \(step) the adapter of rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", ")) differs from rank 0's: "
                + "every rank must run the same lqlora build on the same kind of CPU (its checkpoints stay valid for --resume)"
        }
    }
}

/// Data-parallel training over the ranks of a job: a step's micro-batches are dealt in contiguous
/// blocks (rank r runs micro-batches r·M/N ..< (r+1)·M/N of the M = grad_accum), each from the
/// dropout stream position it has in one process (the generator jumps over the other ranks'
/// draws), so every micro-batch computes as it would alone; then one allreduce sums the gradient
/// slab and a second the micro-batches' losses, which every rank adds in micro-batch order.
struct DataParallel {
    let communicator: any Communicator

    /// Refuses, by name, what cannot train data-parallel.
    static func check(_ config: TrainConfig, ranks: Int) throws {
        guard ranks > 1 else { return }
        if config.method.trainsFullRank { throw DataParallelError.fullRankMethod(method: config.method.rawValue) }
        if let cache = config.teacherCache { throw DataParallelError.teacherCache(path: cache) }
        guard config.gradAccum % ranks == 0 else { throw DataParallelError.indivisible(ranks: ranks, gradAccum: config.gradAccum) }
    }

    /// This rank's micro-batches of a step of `count`.
    func shard(of count: Int) -> Range<Int> {
        let per = count / communicator.size
        return (communicator.rank * per)..<((communicator.rank + 1) * per)
    }

    /// Runs this rank's share of `micro` through `accumulate` (gradients into `parameters`), then
    /// sums the gradients and losses over the job; `rng` ends where one process would leave it.
    func step(_ micro: [Batch], model: LlamaModel, parameters: AdapterParameters, rng: inout SeededGenerator,
              accumulate: (Batch, inout SeededGenerator) throws -> TokenLoss) rethrows -> TokenLoss {
        let mine = shard(of: micro.count), start = rng
        var losses = [Double](repeating: 0, count: micro.count * 4)
        var skipped: UInt64 = 0
        for (k, batch) in micro.enumerated() {
            if mine.contains(k) {
                var stream = start
                stream.advance(by: skipped)
                let l = try accumulate(batch, &stream)
                losses.replaceSubrange((4 * k)..<(4 * k + 4), with: [l.sum, Double(l.targets), l.divergence, Double(l.divergenceRows)])
            }
            skipped += model.dropoutDraws(batch: batch.tokens.count, length: batch.tokens.first?.count ?? 0)
        }
        rng = start
        rng.advance(by: skipped)
        communicator.allreduceSum(parameters.gradientSlab)
        // Each slot holds one rank's value and zeros: the sum is that value exactly.
        losses.withUnsafeMutableBufferPointer { communicator.allreduceSum($0) }
        var loss = TokenLoss()
        for k in micro.indices {
            var l = TokenLoss(sum: losses[4 * k], targets: Int(losses[4 * k + 1]))
            l.divergence = losses[4 * k + 2]
            l.divergenceRows = Int(losses[4 * k + 3])
            loss += l
        }
        return loss
    }

    /// Rank 0 compares every rank's adapter (a CRC-32 of the value slab) with its own.
    func checkAgreement(_ parameters: AdapterParameters, step: Int) throws {
        guard communicator.size > 1, let values = parameters.valueSlab else { return }
        var packet = Packet()
        packet.append(Int(crc32(UnsafeRawBufferPointer(values))))
        guard let all = communicator.gather(packet.bytes, root: 0) else { return }
        let crcs = try all.map { bytes -> Int in
            var reader = Packet.Reader(bytes)
            return try reader.int()
        }
        let differing = crcs.indices.filter { crcs[$0] != crcs[0] }
        if !differing.isEmpty { throw DataParallelError.diverged(step: step, ranks: differing) }
    }

    /// Every file of rank 0's newest checkpoint in `directory`, copied into a private directory on
    /// each other rank (whose output_dir may be on another machine); rank 0 gets its own path back.
    func shareCheckpoint(in directory: String) throws -> (local: String, original: String, cleanup: () -> Void) {
        let fm = FileManager.default
        let bytes = try communicator.bytesOnRoot {
            guard let last = Trainer.checkpoints(in: directory).last else { throw TrainingError.noCheckpoint(directory: directory) }
            let dir = directory + "/checkpoint-\(last)"
            var packet = Packet()
            packet.append(last)
            let names = try fm.contentsOfDirectory(atPath: dir).sorted()
            packet.append(names.count)
            for name in names {
                packet.append(Array(name.utf8))
                guard let data = fm.contents(atPath: dir + "/" + name) else {
                    throw TrainingError.badCheckpoint(path: dir + "/" + name, detail: "cannot be read")
                }
                packet.append(Array(data))
            }
            return packet.bytes
        }
        var reader = Packet.Reader(bytes)
        let step = try reader.int(), original = directory + "/checkpoint-\(step)"
        if communicator.isRoot { return (original, original, {}) }
        let root = NSTemporaryDirectory() + "lqlora-rank\(communicator.rank)-\(UUID().uuidString)", local = root + "/checkpoint-\(step)"
        try fm.createDirectory(atPath: local, withIntermediateDirectories: true)
        for _ in 0..<(try reader.int()) {
            let name = String(decoding: try reader.bytes(), as: UTF8.self)
            try Data(try reader.bytes()).write(to: URL(fileURLWithPath: local + "/" + name))
        }
        return (local, original, { try? fm.removeItem(atPath: root) })
    }
}
