import ArgumentParser
import CKernels
import LQQuant
import LQTensor

/// `lqlora env`: what this machine offers the kernels.
struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show CPU features, kernel level, thread counts and the GPU found.")

    func run() throws {
        let f = lq_cpu_detect()
        let flags = [("avx2", f.avx2), ("fma", f.fma), ("f16c", f.f16c), ("avx512f", f.avx512f), ("neon", f.neon)]
            .filter { $0.1 != 0 }.map(\.0)
        print("lqlora \(LQLoRA.version)")
        print("cpu features:  \(flags.isEmpty ? "none" : flags.joined(separator: " "))")
        print("kernel level:  \(String(cString: lq_level_name(lq_active_level()))) (best \(String(cString: lq_level_name(lq_best_level()))); LQLORA_SIMD overrides)")
        print("threads:       \(Parallel.threadCount) (LQLORA_NUM_THREADS overrides); OpenBLAS \(BLASThreads.count) (products tiled over our threads)")
        switch CUDABackend.loaded {
        case let .success(gpu): print("cuda:          \(gpu.summary)")
        case let .failure(error): print("cuda:          not available: \(error.reason)")
        }
    }
}
