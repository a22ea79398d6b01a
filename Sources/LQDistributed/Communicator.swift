import CKernels
import Foundation

/// The collectives the distributed paths use, over the ranks of one job. One process is a job of
/// size 1 (`SingleProcess`); under `mpirun` it is MPI's world (`MPICommunicator`), so that the
/// trainer and the LQ-LoRA pipeline never see MPI itself. Every rank calls each collective in the
/// same order; a failure inside MPI ends the whole job (MPI's default error handler).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` on every rank by their sum over all ranks.
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>)
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>)
    /// `root`'s bytes, on every rank (what the others pass is ignored).
    func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8]
    /// At `root`, every rank's bytes in rank order; nil on the others.
    func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]]?
    func barrier()
}

/// A failure that concerns the job as a whole, named.
public enum ClusterError: Error, CustomStringConvertible {
    case cannotStart(detail: String)
    /// Seen by the other ranks when rank 0 failed at a step they all wait on; rank 0 reports the cause.
    case rootFailed(detail: String)
    case malformed(detail: String)

    public var description: String {
        switch self {
        case let .cannotStart(detail): return "MPI: \(detail)"
        case let .rootFailed(detail): return "rank 0 failed: \(detail)"
        case let .malformed(detail): return "a message between ranks is malformed (\(detail)); every rank must run the same lqlora build"
        }
    }
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// `body` on rank 0 only; its bytes or its failure reach every rank, so that all go on, or all
    /// stop, together. Rank 0 rethrows its own error, the others `rootFailed` with its text.
    public func bytesOnRoot(_ body: () throws -> [UInt8]) throws -> [UInt8] {
        guard size > 1 else { return try body() }
        var outcome = Packet()
        var failure: Error?
        if isRoot {
            do {
                let value = try body()
                outcome.append(1)
                outcome.append(value)
            } catch {
                failure = error
                outcome.append(0)
                outcome.append(Array("\(error)".utf8))
            }
        }
        var reader = Packet.Reader(broadcast(outcome.bytes, root: 0))
        let ok = try reader.int(), payload = try reader.bytes()
        if let failure { throw failure }
        guard ok == 1 else { throw ClusterError.rootFailed(detail: String(decoding: payload, as: UTF8.self)) }
        return payload
    }

    /// `bytesOnRoot` for a value, JSON-coded (Swift's JSON keeps every Double exactly).
    public func onRoot<T: Codable>(_ body: () throws -> T) throws -> T {
        guard size > 1 else { return try body() }
        let payload = try bytesOnRoot { Array(try JSONEncoder().encode([try body()])) }
        do { return try JSONDecoder().decode([T].self, from: Data(payload))[0] } catch {
            throw ClusterError.malformed(detail: "\(error)")
        }
    }

    /// Every rank's flag, or-ed.
    public func any(_ flag: Bool) -> Bool {
        guard size > 1 else { return flag }
        var value = [flag ? 1.0 : 0.0]
        value.withUnsafeMutableBufferPointer { allreduceSum($0) }
        return value[0] > 0
    }
}

/// This process alone: every collective is the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] { bytes }
    public func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]]? { [bytes] }
    public func barrier() {}
}

/// MPI_COMM_WORLD through the dlopen shim (lq_mpi.h).
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    fileprivate init() {
        rank = Int(lq_mpi_rank())
        size = Int(lq_mpi_size())
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) {
        if let base = values.baseAddress { lq_mpi_allreduce_sum_f32(base, Int64(values.count)) }
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) {
        if let base = values.baseAddress { lq_mpi_allreduce_sum_f64(base, Int64(values.count)) }
    }

    public func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] {
        var count = Int64(bytes.count)
        lq_mpi_bcast(&count, 8, Int32(root))
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        out.withUnsafeMutableBytes { if let base = $0.baseAddress { lq_mpi_bcast(base, count, Int32(root)) } }
        return out
    }

    /// The lengths first, then the bytes in rounds whose total fits MPI's int counts.
    public func gather(_ bytes: [UInt8], root: Int) -> [[UInt8]]? {
        var lengths = [Int64](repeating: 0, count: size)
        lq_mpi_gather_i64(Int64(bytes.count), &lengths, Int32(root))
        // Every rank runs as many rounds as the longest message needs.
        var longest = rank == root ? lengths.max() ?? 0 : 0
        lq_mpi_bcast(&longest, 8, Int32(root))
        let round = max(1, Int(Int32.max) / size)
        var out = rank == root ? lengths.map { [UInt8](repeating: 0, count: Int($0)) } : nil
        for offset in stride(from: 0, to: max(Int(longest), 1), by: round) {
            let mine = Int32(max(0, min(round, bytes.count - offset)))
            var counts = [Int32](repeating: 0, count: size), displacements = [Int32](repeating: 0, count: size)
            var total = 0
            for r in 0..<size where rank == root {
                counts[r] = Int32(max(0, min(round, Int(lengths[r]) - offset)))
                displacements[r] = Int32(total)
                total += Int(counts[r])
            }
            var recv = [UInt8](repeating: 0, count: max(total, 1))
            bytes.withUnsafeBytes { send in
                recv.withUnsafeMutableBytes { r in
                    lq_mpi_gatherv_bytes(send.baseAddress.map { $0 + min(offset, bytes.count) }, mine, r.baseAddress, counts, displacements, Int32(root))
                }
            }
            for r in 0..<size where counts[r] > 0 {
                let start = Int(displacements[r]), n = Int(counts[r])
                out![r].replaceSubrange(offset..<(offset + n), with: recv[start..<(start + n)])
            }
        }
        return out
    }

    public func barrier() { lq_mpi_barrier() }
}

/// The job this process belongs to.
public enum Cluster {
    /// One process until `start()` found an MPI launcher.
    nonisolated(unsafe) public private(set) static var world: any Communicator = SingleProcess()
    nonisolated(unsafe) private static var started = false

    /// Whether mpirun (or another PMIx launcher) started this process.
    public static var launched: Bool { lq_mpi_launched() != 0 }

    /// Ranks of this job on this machine (OpenMPI's OMPI_COMM_WORLD_LOCAL_SIZE; 1 without a launcher).
    public static var localRanks: Int {
        guard launched, let s = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"], let n = Int(s), n > 0 else { return 1 }
        return n
    }

    /// Joins the MPI job when a launcher started this process; otherwise stays one process.
    public static func start() throws {
        guard launched, !started else { return }
        var why = [CChar](repeating: 0, count: 1024)
        guard lq_mpi_init(&why, why.count) == 0 else { throw ClusterError.cannotStart(detail: String(cString: why)) }
        started = true
        let communicator = MPICommunicator()
        world = communicator
        lq_mpi_explain_termination("lqlora: rank \(communicator.rank) of \(communicator.size) stopped by the MPI launcher (SIGTERM): "
                                   + "another rank failed or the job was cancelled; files are written whole or not at "
                                   + "all, and a finetune continues from its last checkpoint with --resume")
    }

    /// MPI_Finalize, once every rank is done.
    public static func finish() {
        guard started else { return }
        started = false
        lq_mpi_finalize()
    }

    /// Ends every rank of the job (MPI_Abort) with `code`; one process just exits.
    public static func abort(code: Int32) -> Never {
        if started { lq_mpi_abort(code) }
        exit(code)
    }
}
