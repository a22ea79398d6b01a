import ArgumentParser
import Foundation
import LQLoRA
import LQQuant
import LQTensor

/// `lqlora bench decompose`: one LQ-LoRA iteration beside one sgesdd and one randomized SVD, and
/// the bit-allocation solve at the sizes of SmolLM2-135M (210 matrices) and a 7B Llama (224).
struct BenchDecompose: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decompose",
        abstract: "LQ-LoRA decomposition and ILP timings beside full and randomized SVD in the same run.")

    @OptionGroup var options: BenchOptions

    @Option(parsing: .unconditional, help: "Matrix size (square).")
    var size = 4096

    @Option(parsing: .unconditional, help: "Rank of the low-rank part.")
    var rank = 64

    @Flag(help: "Only the ILP figures.")
    var ilpOnly = false

    @Option(parsing: .upToNextOption, help: "Matrices of each ILP problem timed (default 210 224: SmolLM2-135M's and a 7B Llama's).")
    var ilpMatrices = [210, 224]

    func validate() throws {
        guard size >= 2, rank >= 1, rank < size else { throw ValidationError("--size must be at least 2 and --rank between 1 and --size − 1") }
        guard !ilpMatrices.isEmpty, ilpMatrices.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--ilp-matrices takes positive counts") }
        guard options.repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        Parallel.configure(threads: options.threads)
        var rng = SeededGenerator(seed: 4)
        let w = Tensor.gaussian([size, size], using: &rng, scale: 0.02)
        var figures: [BenchFigure] = []
        let repeats = max(1, options.repeats / 3)
        if !ilpOnly {
        let tFull = Timing.median(repeats: 1) { _ = try? svd(w) }
        figures.append(BenchFigure(name: "sgesdd \(size)², full SVD", value: tFull, unit: "s", anchor: nil, anchor_value: nil, ratio: nil))
        let tRand = Timing.median(repeats: repeats) { _ = try? randomizedSVD(w, rank: rank, rng: &rng) }
        figures.append(BenchFigure(name: "randomized SVD rank \(rank) (+10, 2 power iterations)", value: tRand, unit: "s",
                                   anchor: "sgesdd", anchor_value: tFull, ratio: tFull / tRand))
        let tQuant = Timing.median(repeats: repeats) { _ = try? Quantizer.quantize(w, config: .qlora(bits: 3)) }
        figures.append(BenchFigure(name: "quantize NF3 (3.127 bits)", value: tQuant, unit: "s", anchor: nil, anchor_value: nil, ratio: nil))
        var perIteration = 0.0
        let tDecompose = Timing.median(repeats: 1) {
            if let r = try? Decomposition.decompose(w, config: .qlora(bits: 3), rank: rank, maxIterations: 3) {
                perIteration = Double(r.errors.count)
            }
        }
        let iteration = tDecompose / max(perIteration, 1)
        figures.append(BenchFigure(name: "LQ-LoRA iteration (rSVD + quantize + error), NF3 rank \(rank)", value: iteration, unit: "s",
                                   anchor: "sgesdd", anchor_value: tFull, ratio: tFull / iteration))
        // The error table's inner loop on one of SmolLM2's MLP matrices (576×1536; fewer rows below
        // --size 576): the fused kernel against quantize → dequantize → measure, alternating, on
        // every 8th grid configuration.
        let mlp = Tensor.gaussian([min(size, 576), 1536], using: &rng, scale: 0.02), shape = "\(mlp.shape[0])×\(mlp.shape[1])"
        let subset = stride(from: 0, to: QuantConfig.lqloraGrid.count, by: 8).map { QuantConfig.lqloraGrid[$0] }
        var fused: [Double] = [], measured: [Double] = []
        for _ in 0..<repeats {
            fused.append(Timing.seconds { _ = try? ErrorTable.errors(mlp, configs: subset, rank: 0) })
            measured.append(Timing.seconds { for c in subset { _ = try? ErrorTable.measuredError(of: mlp, config: c) } })
        }
        let tFused = Timing.medianOf(fused), tMeasured = Timing.medianOf(measured)
        figures.append(BenchFigure(name: "error table \(shape), \(subset.count) grid configurations, quantize + dequantize + measure",
                                   value: tMeasured, unit: "s", anchor: nil, anchor_value: nil, ratio: nil))
        figures.append(BenchFigure(name: "error table \(shape), the same configurations, fused", value: tFused, unit: "s",
                                   anchor: "quantize + dequantize + measure", anchor_value: tMeasured, ratio: tMeasured / tFused))
        let tTable = Timing.median(repeats: repeats) { _ = try? ErrorTable.errors(mlp, configs: QuantConfig.lqloraGrid, rank: 0) }
        figures.append(BenchFigure(name: "error table \(shape), all 432 configurations, fused", value: tTable, unit: "s",
                                   anchor: nil, anchor_value: nil, ratio: nil))
        }
        // The ILP over the 432 grid configurations, with scripts/bench-allocate.py's cost model:
        // error_ij = s_i · 2^(−2 bits_j) · (1 + 0.1 u_ij), s_i = numel_i · exp(N(0, 0.5²)), u uniform.
        // 210 matrices take SmolLM2-135M's shapes, any other count a 7B Llama's.
        let known = [210: "SmolLM2-135M", 224: "7B Llama"]
        for matrices in ilpMatrices {
            let layer: [Int64] = matrices == 210 ? [576 * 1536, 1536 * 576, 1536 * 576, 192 * 576, 576 * 576, 576 * 576, 192 * 576]
                : [4096 * 11008, 11008 * 4096, 11008 * 4096, 4096 * 4096, 4096 * 4096, 4096 * 4096, 4096 * 4096]
            let numels = (0..<matrices).map { layer[$0 % 7] }
            let classes = numels.map { numel -> [BitAllocation.Item] in
                let sensitivity = Double(numel) * exp(0.5 * Double(rng.nextGaussian()))
                return QuantConfig.lqloraGrid.map { c in
                    let u = Double(rng.next() % 1_000_000) / 1e6
                    return BitAllocation.Item(error: sensitivity * pow(2, -2 * c.bitsPerParameter) * (1 + 0.1 * u),
                                              bitsPerParameter: c.bitsPerParameter, parameters: numel)
                }
            }
            for budget in [2.5, 2.75, 3.5] {
                let capacity = BitAllocation.Item.capacity(budget: budget, parameters: numels.reduce(0, +))
                var solution: BitAllocation.Solution?
                let t = Timing.median(repeats: options.repeats) { solution = try? BitAllocation.solve(classes, capacity: capacity, timeLimit: 60) }
                let status = solution.map { $0.optimal ? "optimal" : String(format: "relative gap %.1e", $0.gap / $0.error) } ?? "failed"
                figures.append(BenchFigure(name: "ILP \(matrices)×432\(known[matrices].map { " (\($0)-shaped)" } ?? ""), budget \(budget), \(status)",
                                           value: t, unit: "s", anchor: nil, anchor_value: nil, ratio: nil))
            }
        }
        try printFigures(figures, json: options.json)
    }
}
