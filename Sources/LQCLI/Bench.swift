import ArgumentParser
import CKernels
import Foundation
import LQTensor

/// Timing helpers: every figure is a median over repeats, next to an anchor measured in the same run.
enum Timing {
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    /// Median seconds of `repeats` runs of `body`, after one warm-up run.
    static func median(repeats: Int, _ body: () -> Void) -> Double {
        body()
        return medianOf((0..<max(1, repeats)).map { _ in seconds(body) })
    }

    /// Median seconds of each body over `repeats` rounds that run every body once in turn (after a
    /// warm-up round), so a load that comes and goes on a shared machine falls on all of them alike.
    static func interleavedMedians(repeats: Int, _ bodies: [() -> Void]) -> [Double] {
        for body in bodies { body() }
        var times = [[Double]](repeating: [], count: bodies.count)
        for _ in 0..<max(1, repeats) {
            for (k, body) in bodies.enumerated() { times[k].append(seconds(body)) }
        }
        return times.map(medianOf)
    }

    static func seconds(_ body: () -> Void) -> Double {
        let t0 = now()
        body()
        return now() - t0
    }

    static func medianOf(_ values: [Double]) -> Double {
        let times = values.sorted(), n = times.count
        return n % 2 == 1 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2
    }
}

/// One benchmark figure with its anchor. For times (ms) the ratio is anchor / value: > 1 is faster.
struct BenchFigure: Codable {
    let name: String
    let value: Double
    let unit: String
    let anchor: String?
    let anchor_value: Double?
    /// value / anchor_value (for throughputs: > 1 is faster than the anchor).
    let ratio: Double?
}

func printFigures(_ figures: [BenchFigure], json: Bool) throws {
    if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        print(String(decoding: try encoder.encode(figures), as: UTF8.self))
        return
    }
    let rows = figures.map { f in
        [f.name, String(format: "%.2f %@", f.value, f.unit), f.anchor ?? "",
         f.anchor_value.map { String(format: "%.2f %@", $0, f.unit) } ?? "", f.ratio.map { String(format: "%.2fx", $0) } ?? ""]
    }
    print(Format.table(header: ["benchmark", "value", "anchor", "anchor value", "ratio"], rows: rows, rightAligned: [1, 3, 4]))
}

/// `lqlora bench ...`: measured figures, each beside its anchor from the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: each figure is reported beside its anchor measured in the same run.",
        subcommands: [BenchBLAS.self, BenchQuant.self, BenchDecompose.self])
}

struct BenchOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Timed repeats per figure (the median is reported).")
    var repeats = 7

    @Option(parsing: .unconditional, help: "Threads for our loops and OpenBLAS (default: LQLORA_NUM_THREADS or all cores).")
    var threads: Int?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }
}

/// `lqlora bench blas`: the machine's limits that later benchmarks quote.
struct BenchBLAS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blas",
        abstract: "sgemm GFLOP/s (2048³) and bf16/f16→fp32 conversion throughput beside memcpy.")

    @OptionGroup var options: BenchOptions

    @Option(parsing: .unconditional, help: "Matrix size for sgemm.")
    var size = 2048

    @Option(parsing: .unconditional, help: "Elements converted per run (the output is 4 bytes each).")
    var elements = 1 << 24

    func validate() throws {
        guard size >= 1, elements >= 1, options.repeats >= 1 else { throw ValidationError("--size, --elements and --repeats must be positive") }
    }

    func run() throws {
        Parallel.configure(threads: options.threads)
        var figures: [BenchFigure] = []

        // sgemm: n³ multiply-adds.
        var rng = SeededGenerator(seed: 1)
        let a = Tensor.gaussian([size, size], using: &rng), b = Tensor.gaussian([size, size], using: &rng)
        let c = Tensor(zeros: [size, size])
        // Our gemm (OpenBLAS single-threaded on tiles fixed by the shape, on our threads) beside
        // OpenBLAS threading the whole product itself, interleaved.
        let flops = 2 * pow(Double(size), 3)
        var ours: [Double] = [], theirs: [Double] = []
        gemm(a.matrix, b.matrix, into: c.matrix)  // warm-up
        for _ in 0..<max(1, options.repeats) {
            ours.append(Timing.seconds { gemm(a.matrix, b.matrix, into: c.matrix) })
            theirs.append(Timing.seconds { OpenBLASAnchor.gemm(a.matrix, b.matrix, into: c.matrix, threads: Parallel.threadCount) })
        }
        let gflops = flops / Timing.medianOf(ours) / 1e9, anchorGflops = flops / Timing.medianOf(theirs) / 1e9
        figures.append(BenchFigure(name: "sgemm \(size)³ OpenBLAS, \(Parallel.threadCount) threads", value: anchorGflops, unit: "GFLOP/s",
                                   anchor: nil, anchor_value: nil, ratio: nil))
        figures.append(BenchFigure(name: "sgemm \(size)³ tiled (deterministic), \(Parallel.threadCount) threads", value: gflops, unit: "GFLOP/s",
                                   anchor: "OpenBLAS", anchor_value: anchorGflops, ratio: gflops / anchorGflops))

        // Conversion throughput in GB/s of fp32 output, against memcpy of the same output size.
        let n = elements
        let src = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let copySrc = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { src.deallocate(); dst.deallocate(); copySrc.deallocate() }
        for i in 0..<n { src[i] = UInt16(truncatingIfNeeded: rng.next()) & 0x7bff; copySrc[i] = Float(i) }
        let outBytes = Double(n * 4)
        let tCopy = Timing.median(repeats: options.repeats) { memcpy(dst, copySrc, n * 4) }
        let copyGBs = outBytes / tCopy / 1e9
        figures.append(BenchFigure(name: "memcpy \(Format.bytes(n * 4))", value: copyGBs, unit: "GB/s",
                                   anchor: nil, anchor_value: nil, ratio: nil))
        let best = lq_best_level()
        let levels = best == LQ_LEVEL_SCALAR ? [LQ_LEVEL_SCALAR] : [best, LQ_LEVEL_SCALAR]
        for (label, convert) in [("bf16→fp32", lq_bf16_to_f32_level), ("f16→fp32", lq_f16_to_f32_level)] {
            for level in levels {
                let tc = Timing.median(repeats: options.repeats) { convert(level, src, dst, n) }
                let gbs = outBytes / tc / 1e9
                figures.append(BenchFigure(name: "\(label) \(String(cString: lq_level_name(level))), 1 thread",
                                           value: gbs, unit: "GB/s", anchor: "memcpy", anchor_value: copyGBs, ratio: gbs / copyGBs))
            }
        }
        try printFigures(figures, json: options.json)
    }
}
