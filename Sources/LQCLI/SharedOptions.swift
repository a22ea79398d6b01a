import ArgumentParser
import CKernels
import Foundation
import LQDistributed
import LQQuant
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

/// `--activations`, for the commands that run a model on the CPU: whether the NormalFloat
/// projections quantize their input to int8 (`ActivationPath`, with the outlier residual of lq_q8.h).
/// LQLORA_DECODE sets the default; without it decoding (generate, rag ask) takes int8, whose
/// perplexity cost on SmolLM2 is within the 0.2 % asked (docs/BENCHMARKS.md, "int8 activations"),
/// and eval the exact path, the reference.
struct ActivationOptions: ParsableArguments {
    enum Precision: String, ExpressibleByArgument, CaseIterable {
        case exact, int8
    }

    static let environmentKey = "LQLORA_DECODE"

    @Option(help: "exact (fp32) or int8: NormalFloat products quantize x per block of 32 to int8, as llama.cpp's Q8_0, with an int8 residual for the blocks that hold an outlier (WikiText-2 perplexity on NF4 SmolLM2-135M: −0.13 % from exact). Default: LQLORA_DECODE, else int8 for generate and rag ask, exact for eval.")
    var activations: Precision?

    func validate() throws { _ = try precision(batches: false) }

    /// --activations, else LQLORA_DECODE, else the command's default: exact where every product
    /// counts (`batches`: eval), int8 for decoding.
    func precision(batches: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Precision {
        if let activations { return activations }
        guard let value = environment[Self.environmentKey], !value.isEmpty else { return batches ? .exact : .int8 }
        guard let p = Precision(rawValue: value) else {
            throw ValidationError("\(Self.environmentKey) must be \(Precision.allCases.map(\.rawValue).joined(separator: " or ")), not '\(value)'")
        }
        return p
    }

    /// The model's path: int8 for decoding only (batches such as a prompt stay exact), or with
    /// `batches` for every product (eval, to measure its cost).
    func path(batches: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ActivationPath {
        switch try precision(batches: batches, environment: environment) {
        case .exact: return .exact
        case .int8: return batches ? .int8 : .int8Decode
        }
    }
}
