import ArgumentParser
import CKernels
import Foundation
import LQDistributed
import LQTensor

/// `--threads`, for the commands that compute on the CPU.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads (default: LQLORA_NUM_THREADS or all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Sizes this process's pool (and OpenBLAS's). Under mpirun the default is this machine's
    /// cores shared among the job's ranks on it, and no more than the cores mpirun bound it to.
    func configure() {
        var shared: Int?
        if Cluster.launched && ProcessInfo.processInfo.environment["LQLORA_NUM_THREADS"] == nil {
            let bound = Int(lq_affinity_cpus()), cores = ProcessInfo.processInfo.activeProcessorCount
            shared = max(1, min(bound > 0 ? bound : cores, cores / Cluster.localRanks))
        }
        Parallel.configure(threads: threads ?? shared)
    }
}

/// `--out` and `--overwrite`, for the commands that write a model directory.
struct OutputOptions: ParsableArguments {
    @Option(help: "The output directory.")
    var out: String

    @Flag(help: "Replace --out if it exists.")
    var overwrite = false

    /// The staging directory that becomes --out on commit.
    func staged() throws -> StagedDirectory { try StagedDirectory(destination: out, overwrite: overwrite) }
}
