import ArgumentParser
import CKernels
import Foundation
import LQQuant
import LQTensor

/// `lqlora bench quant`: dequantization against memcpy, fused GEMV against sgemv on the dense
/// matrix, panel GEMM against sgemm, for NF4 (bitsandbytes layout), NF3 and NF2; GPTQ's int4 g128
/// GEMV against sgemv and NF4; the int8-activation GEMV against the exact one and sgemv.
struct BenchQuant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quant",
        abstract: "NormalFloat kernels beside memcpy, cblas_sgemv and cblas_sgemm in the same run.")

    @OptionGroup var options: BenchOptions

    @Option(parsing: .unconditional, help: "Rows of x for the GEMM figure.")
    var gemmRows = 512

    @Flag(help: "Skip the slow GEMM figures.")
    var noGemm = false

    func validate() throws {
        guard gemmRows >= 1, options.repeats >= 1 else { throw ValidationError("--gemm-rows and --repeats must be positive") }
    }

    func run() throws {
        Parallel.configure(threads: options.threads)
        let threads = Parallel.threadCount
        var figures: [BenchFigure] = []
        var rng = SeededGenerator(seed: 3)
        let formats: [(String, QuantConfig)] = [("nf4", .nf4DoubleQuant), ("nf3", .qlora(bits: 3)), ("nf2", .qlora(bits: 2))]
        let square = Tensor.gaussian([4096, 4096], using: &rng, scale: 0.02)

        // Dequantization, one thread, against memcpy of the same output size.
        let n = square.count
        let out = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { out.deallocate() }
        let tCopy = Timing.median(repeats: options.repeats) { memcpy(out, square.pointer, n * 4) }
        let copyGBs = Double(n * 4) / tCopy / 1e9
        figures.append(BenchFigure(name: "memcpy 64 MiB, 1 thread", value: copyGBs, unit: "GB/s", anchor: nil, anchor_value: nil, ratio: nil))
        for (label, config) in formats {
            let q = try Quantizer.quantize(square, config: config)
            let t = Timing.median(repeats: options.repeats) { q.dequantize(rows: 0..<4096, into: out) }
            let gbs = Double(n * 4) / t / 1e9
            figures.append(BenchFigure(name: "\(label) dequantize 4096², 1 thread", value: gbs, unit: "GB/s",
                                       anchor: "memcpy", anchor_value: copyGBs, ratio: gbs / copyGBs))
        }

        // Fused GEMV against sgemv on the dense fp32 matrix, same thread count.
        for (rows, cols) in [(4096, 4096), (11008, 4096)] {
            let w = rows == 4096 ? square : Tensor.gaussian([rows, cols], using: &rng, scale: 0.02)
            let x = Tensor.gaussian([cols], using: &rng)
            let y = Tensor(zeros: [rows])
            let tDense = Timing.median(repeats: options.repeats) { OpenBLASAnchor.gemv(w.matrix, x: x.pointer, y: y.pointer, threads: threads) }
            figures.append(BenchFigure(name: "sgemv \(rows)x\(cols) fp32 (OpenBLAS), \(threads) threads", value: tDense * 1e3, unit: "ms",
                                       anchor: nil, anchor_value: nil, ratio: nil))
            var nf4 = 0.0
            for (label, config) in formats {
                let q = try Quantizer.quantize(w, config: config)
                let t = Timing.median(repeats: options.repeats) { q.gemv(x.pointer, y.pointer) }
                if label == "nf4" { nf4 = t }
                figures.append(BenchFigure(name: "\(label) gemv \(rows)x\(cols), \(threads) threads", value: t * 1e3, unit: "ms",
                                           anchor: "sgemv", anchor_value: tDense * 1e3, ratio: tDense / t))
            }
            // GPTQ's int4 with groups of 128 (codes a byte each in memory), against sgemv and NF4 from this run.
            let int4 = UniformQuantization.roundToNearest(w.pointer, rows: rows, cols: cols, quantizer: UniformQuantizer(bits: 4, symmetric: true),
                                                          groupSize: 128)
            let xm = x.reshaped([1, cols])
            let t = Timing.median(repeats: options.repeats) { _ = int4.matmul(xm) }
            figures.append(BenchFigure(name: "int4 g128 gemv \(rows)x\(cols), \(threads) threads", value: t * 1e3, unit: "ms",
                                       anchor: "sgemv", anchor_value: tDense * 1e3, ratio: tDense / t))
            figures.append(BenchFigure(name: "int4 g128 gemv \(rows)x\(cols) against nf4, \(threads) threads", value: t * 1e3, unit: "ms",
                                       anchor: "nf4 gemv", anchor_value: nf4 * 1e3, ratio: nf4 / t))
        }

        // int8 activations (lq_q8.h; x quantized in the timed call) beside the exact GEMV of the same
        // matrix and sgemv, interleaved round by round.
        for (rows, cols) in [(4096, 4096), (11008, 4096)] {
            let w = rows == 4096 ? square : Tensor.gaussian([rows, cols], using: &rng, scale: 0.02)
            let x = Tensor.gaussian([cols], using: &rng)
            let y = Tensor(zeros: [rows])
            let matrices = try formats.map { try Quantizer.quantize(w, config: $0.1) }
            var bodies: [() -> Void] = [{ OpenBLASAnchor.gemv(w.matrix, x: x.pointer, y: y.pointer, threads: threads) }]
            for q in matrices {
                bodies.append { q.gemv(x.pointer, y.pointer) }
                bodies.append { q.int8Product(x.pointer, rows: 1, into: y.pointer) }
            }
            let t = Timing.interleavedMedians(repeats: options.repeats, bodies)
            let sgemv = "sgemv \(rows)x\(cols) fp32 (OpenBLAS), \(threads) threads, interleaved"
            figures.append(BenchFigure(name: sgemv, value: t[0] * 1e3, unit: "ms", anchor: nil, anchor_value: nil, ratio: nil))
            for (k, (label, _)) in formats.enumerated() {
                let exact = t[1 + 2 * k], int8 = t[2 + 2 * k]
                figures.append(BenchFigure(name: "\(label) gemv \(rows)x\(cols), \(threads) threads, interleaved", value: exact * 1e3,
                                           unit: "ms", anchor: "sgemv", anchor_value: t[0] * 1e3, ratio: t[0] / exact))
                figures.append(BenchFigure(name: "\(label) int8-activation gemv \(rows)x\(cols), \(threads) threads, interleaved", value: int8 * 1e3,
                                           unit: "ms", anchor: "\(label) gemv", anchor_value: exact * 1e3, ratio: exact / int8))
                figures.append(BenchFigure(name: "\(label) int8-activation gemv \(rows)x\(cols) against sgemv, interleaved", value: int8 * 1e3,
                                           unit: "ms", anchor: "sgemv", anchor_value: t[0] * 1e3, ratio: t[0] / int8))
            }
        }

        // The decode rate alone: a matrix whose codes stay in cache, one thread, beside sgemv on the
        // same (cache-resident) dense matrix. From memory NF4 reads 1/7.5 of sgemv's bytes; in cache
        // the comparison shows what decoding in registers costs per weight.
        do {
            let (rows, cols) = (256, 2048)
            let w = Tensor.gaussian([rows, cols], using: &rng, scale: 0.02)
            let x = Tensor.gaussian([cols], using: &rng)
            let y = Tensor(zeros: [rows])
            let q = try Quantizer.quantize(w, config: .nf4DoubleQuant)
            let repeats = 50
            Parallel.configure(threads: 1)
            defer { Parallel.configure(threads: options.threads) }
            let tDense = Timing.median(repeats: options.repeats) { for _ in 0..<repeats { OpenBLASAnchor.gemv(w.matrix, x: x.pointer, y: y.pointer, threads: 1) } }
            let t = Timing.median(repeats: options.repeats) { for _ in 0..<repeats { q.gemv(x.pointer, y.pointer) } }
            let t8 = Timing.median(repeats: options.repeats) { for _ in 0..<repeats { q.int8Product(x.pointer, rows: 1, into: y.pointer) } }
            let weights = Double(rows * cols * repeats)
            figures.append(BenchFigure(name: "sgemv \(rows)x\(cols) in cache, 1 thread", value: weights / tDense / 1e9, unit: "Gw/s",
                                       anchor: nil, anchor_value: nil, ratio: nil))
            figures.append(BenchFigure(name: "nf4 gemv \(rows)x\(cols) in cache, 1 thread", value: weights / t / 1e9, unit: "Gw/s",
                                       anchor: "sgemv", anchor_value: weights / tDense / 1e9, ratio: tDense / t))
            figures.append(BenchFigure(name: "nf4 int8-activation gemv \(rows)x\(cols) in cache, 1 thread", value: weights / t8 / 1e9, unit: "Gw/s",
                                       anchor: "nf4 gemv", anchor_value: weights / t / 1e9, ratio: t / t8))
        }

        if !noGemm {
            let x = Tensor.gaussian([gemmRows, 4096], using: &rng)
            let c = Tensor(zeros: [gemmRows, 4096])
            let tDense = Timing.median(repeats: max(1, options.repeats / 2)) {
                OpenBLASAnchor.gemm(x.matrix, square.matrix, transposeB: true, into: c.matrix, threads: threads)
            }
            figures.append(BenchFigure(name: "sgemm \(gemmRows)x4096x4096 (OpenBLAS), \(threads) threads", value: tDense * 1e3, unit: "ms",
                                       anchor: nil, anchor_value: nil, ratio: nil))
            for (label, config) in formats {
                let q = try Quantizer.quantize(square, config: config)
                let t = Timing.median(repeats: max(1, options.repeats / 2)) { _ = q.matmul(x) }
                figures.append(BenchFigure(name: "\(label) gemm \(gemmRows)x4096x4096, \(threads) threads", value: t * 1e3, unit: "ms",
                                           anchor: "sgemm", anchor_value: tDense * 1e3, ratio: tDense / t))
            }
        }
        try printFigures(figures, json: options.json)
    }
}
