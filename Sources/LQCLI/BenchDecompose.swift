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

    @Option(help: "Matrix size (square).")
    var size = 4096

    @Option(help: "Rank of the low-rank part.")
    var rank = 64

    @Flag(help: "Only the ILP figures.")
    var ilpOnly = false

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
        }
        // The ILP: 432 grid configurations per matrix with errors falling in bits, as measured ones do.
        for (matrices, label) in [(210, "SmolLM2-135M"), (224, "7B Llama")] {
            let grid = QuantConfig.lqloraGrid
            let classes = (0..<matrices).map { i -> [BitAllocation.Item] in
                let numel = Int64(i % 7 < 4 ? 4096 * 4096 : 4096 * 11008)
                return grid.map { c in
                    let noise = Double(rng.next() % 1000) / 1e5
                    return BitAllocation.Item(error: Double(numel) * (pow(2, -2 * c.bitsPerParameter) + noise * 1e-3),
                                              weight: Int64(c.bitsPerParameter * 16384) * numel)
                }
            }
            let total = classes.reduce(Int64(0)) { $0 + $1[0].weight / Int64(QuantConfig.lqloraGrid[0].bitsPerParameter * 16384) }
            var solution: BitAllocation.Solution?
            let t0 = Timing.now()
            solution = try? BitAllocation.solve(classes, capacity: Int64(2.75 * 16384) * total, timeLimit: 60)
            let t = Timing.now() - t0
            let status = solution.map { $0.optimal ? "optimal" : String(format: "relative gap %.1e", $0.gap / $0.error) } ?? "failed"
            figures.append(BenchFigure(name: "ILP \(matrices)×432 (\(label)), budget 2.75, \(status)",
                                       value: t, unit: "s", anchor: nil, anchor_value: nil, ratio: nil))
        }
        try printFigures(figures, json: options.json)
    }
}
