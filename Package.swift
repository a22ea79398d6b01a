// swift-tools-version:6.0
// lqlora: NormalFloat / LQ-LoRA quantization and LoRA finetuning of Hugging Face checkpoints.
import PackageDescription

let package = Package(
    name: "lqlora",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lqlora", targets: ["lqlora"]),
        .library(name: "LQTensor", targets: ["LQTensor"]),
        .library(name: "LQFormats", targets: ["LQFormats"]),
        .library(name: "LQQuant", targets: ["LQQuant"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries, found through pkg-config; the providers say what to install when missing.
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(
            name: "CLAPACKE", path: "Sources/CLAPACKE", pkgConfig: "lapacke",
            providers: [.apt(["liblapacke-dev"]), .brew(["lapack"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        // ICU (Debian libicu-dev) behind C functions, so that its types never meet those of the ICU
        // inside Foundation: sentence boundaries, and regular expressions with a time limit.
        .target(name: "CTextBreak", path: "Sources/CTextBreak", linkerSettings: [.linkedLibrary("icuuc"), .linkedLibrary("icui18n")]),
        // hnswlib (Debian libhnswlib-dev, header-only C++) behind a C interface.
        .target(name: "CHNSW", path: "Sources/CHNSW"),
        // SentencePiece (Debian libsentencepiece-dev) behind a C interface: tokenizer.model's pieces for GGUF export.
        .target(name: "CSentencePiece", path: "Sources/CSentencePiece", linkerSettings: [.linkedLibrary("sentencepiece")]),

        // Hand-written kernels: scalar references plus SIMD paths chosen at run time, the thread pool
        // of our parallel loops, and the loader of the CUDA library (whose .cu sources in cuda/ are
        // built by scripts/build-cuda.sh, never by SwiftPM).
        .target(
            name: "CKernels", path: "Sources/CKernels",
            exclude: ["cuda"],
            // No FMA contraction: the scalar reference must round as the CUDA kernels do (lq_layout.h).
            cSettings: [.unsafeFlags(["-O3", "-std=c11", "-ffp-contract=off"])]),

        // fp32 tensors over owned or memory-mapped buffers, 16-bit matrices kept as stored, BLAS/LAPACK,
        // randomized SVD, parallel loops.
        .target(name: "LQTensor", dependencies: ["CBLAS", "CLAPACKE", "CKernels"]),
        // Checkpoint files: safetensors (single and sharded).
        .target(name: "LQFormats", dependencies: ["LQTensor", "CKernels", "CZlib"]),
        // NormalFloat formats, the quantizer, quantized matrices (dequantize, GEMV, GEMM; on the GPU
        // through the CUDA library when one is loaded), their file layouts.
        .target(name: "LQQuant", dependencies: ["LQTensor", "LQFormats", "CKernels", "CBLAS"]),
        // Llama-family models: configuration, GGUF import and export, tokenizer, forward pass.
        .target(name: "LQModel", dependencies: ["LQTensor", "LQFormats", "LQQuant", "CKernels", "CBLAS", "CTextBreak", "CSentencePiece"]),
        // The ranks of a job: one process, or MPI's world (libmpi opened at run time, only under mpirun).
        .target(name: "LQDistributed", dependencies: ["CKernels"]),
        // LQ-LoRA: low-rank plus quantized decomposition and the bit-allocation ILP.
        .target(name: "LQLoRA", dependencies: ["LQTensor", "LQFormats", "LQQuant", "LQModel", "LQDistributed", "CKernels"]),
        // LoRA finetuning: YAML config, datasets, optimizers, the training loop and its checkpoints.
        .target(name: "LQTrain", dependencies: ["LQTensor", "LQFormats", "LQQuant", "LQModel", "LQDistributed", "CKernels", .product(name: "Yams", package: "Yams")]),
        // Retrieval-augmented answers: chunking, the passage database (SQLite) with its HNSW index,
        // the Quantized Influence Measure, answers and feedback.
        .target(name: "LQRAG", dependencies: ["LQModel", "LQTensor", "LQFormats", "CSQLite", "CTextBreak", "CHNSW"]),
        // The subcommands, kept in a library so tests can drive them.
        .target(
            name: "LQCLI",
            dependencies: [
                "LQTensor", "LQFormats", "LQQuant", "LQModel", "LQLoRA", "LQTrain", "LQRAG", "LQDistributed", "CKernels", "CBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "lqlora", dependencies: ["LQCLI", "CKernels"]),
        // The mutation fuzzer of the four input parsers (safetensors, GGUF + conversion,
        // tokenizer.json, YAML config) and its batch runner for scripts/fuzz.sh.
        .target(name: "LQFuzz", dependencies: ["LQTensor", "LQFormats", "LQModel", "LQTrain"]),
        .executableTarget(name: "lqlora-fuzz", dependencies: ["LQFuzz"]),

        // Helpers shared by the test targets (running the built executable).
        .target(name: "LQTestSupport", dependencies: ["LQTensor"], path: "Tests/TestSupport"),
        // liblqlora_cuda.so's entry points computed on the host, so the device-resident forward pass
        // is tested without a GPU.
        .target(name: "CUDAEmulation", dependencies: ["CKernels", "CBLAS"], path: "Tests/CUDAEmulation"),
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels"]),
        .testTarget(name: "LQTensorTests", dependencies: ["LQTensor", "CKernels"]),
        .testTarget(name: "LQFormatsTests", dependencies: ["LQFormats", "LQTensor", "LQQuant", "LQModel", "LQCLI", "LQTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LQLoRATests", dependencies: ["LQLoRA", "LQQuant", "LQTensor", "LQFormats", "LQModel", "LQTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LQModelTests", dependencies: ["LQModel", "LQFormats", "LQTensor", "LQQuant", "CUDAEmulation", "CKernels", "LQTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LQDistributedTests", dependencies: ["LQDistributed", "LQTestSupport"]),
        .testTarget(name: "LQTrainTests", dependencies: ["LQTrain", "LQModel", "LQFormats", "LQTensor", "LQQuant", "LQTestSupport"], exclude: ["Fixtures"]),
        // The subcommands end to end, each against an oracle from the reference libraries (scripts/make-cli-fixtures.py).
        .testTarget(name: "LQCLITests", dependencies: ["LQFormats", "LQTensor", "LQQuant", "LQModel", "LQRAG", "LQTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LQRAGTests", dependencies: ["LQRAG", "LQModel", "LQTensor", "LQTestSupport"], exclude: ["Fixtures"]),
        // The fuzzer over its committed corpus, and each crash it or a user found as a regression case.
        .testTarget(name: "LQFuzzTests", dependencies: ["LQFuzz", "LQFormats", "LQModel", "LQTrain", "LQTensor", "LQTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "LQQuantTests", dependencies: ["LQQuant", "LQFormats", "LQTensor", "CKernels", "CUDAEmulation", "LQTestSupport"], exclude: ["Fixtures"]),
    ],
    // Swift 5 mode: the kernels hand raw buffers to concurrent loops, which Swift 6's
    // checker cannot see are disjoint.
    swiftLanguageModes: [.v5],
    cxxLanguageStandard: .cxx17
)
