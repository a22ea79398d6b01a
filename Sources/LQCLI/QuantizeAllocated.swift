import Foundation
import LQDistributed
import LQFormats
import LQLoRA
import LQModel
import LQQuant
import LQTensor

extension Quantize {
    /// The pipeline's options from the command line (validate() has refused what does not apply).
    var pipelineOptions: LQLoRAPipeline.Options {
        // With --memory the pipeline chooses the budget.
        var o = LQLoRAPipeline.Options(method: resolvedMethod == .lqLora ? .lqLora : .qloraILP, budget: budget ?? 0)
        o.memory = memory?.bytes
        if let rank { o.rank = rank }
        if let alpha { o.alpha = alpha }
        if let maxIters { o.maxIterations = maxIters }
        if let grid { o.grid = grid }
        if let svd { o.svd = svd }
        if let ilpTime { o.ilpTimeLimit = ilpTime }
        o.fisher = fisher
        o.ilpCache = ilpCache
        o.targets = targetList
        return o
    }

    /// lq-lora and qlora-ilp: LQLoRAPipeline, then the model, its adapter and quant_report.json.
    /// Under mpirun the pipeline's work is split across the ranks; rank 0 owns --out and writes it.
    func quantizeWithAllocation() throws {
        let start = Timing.now()
        let world = Cluster.world
        let checkpoint = try Checkpoint(path: model)
        try CheckpointValidation.requireDense(checkpoint)
        let plan = try LQLoRAPipeline.Plan(pipelineOptions, checkpoint: checkpoint)
        var claimed: StagedDirectory?
        _ = try world.onRoot { () -> Bool in
            claimed = try output.staged()
            return true
        }
        var committed = false
        defer { if !committed { claimed?.abandon() } }

        var bar: Progress?
        let label = world.size > 1 ? " (rank 0 of \(world.size): its share)" : ""
        let run = try LQLoRAPipeline.run(plan, communicator: world) { event in
            guard world.isRoot else { return }
            switch event {
            case let .began(stage, matrices): bar = Progress(total: matrices, label: stage.rawValue + label)
            case let .matrix(_, index, name, config): bar?.update(index + 1, detail: config.map { "\(name) \($0.name)" } ?? name)
            }
        }
        guard var result = run, let staged = claimed else { return }
        try LQLoRAPipeline.write(result, plan: plan, to: staged.staging)
        let seconds = Timing.now() - start
        result.report.seconds.total = seconds
        try JSONTree.write(result.report, to: staged.path("quant_report.json"))
        try staged.commit()
        committed = true
        let report = result.report, solver = report.solver
        if let m = report.memory { print(m.summary(budget: report.budget)) }
        print(String(format: "%@: %d matrices at %.3f bits per parameter (budget %.3f, %@%@) in %.1f s → %@", report.method, result.matrices.count,
                     report.averageBits, report.budget, solver.optimal ? "optimal" : "ILP gap ",
                     solver.optimal ? "" : String(format: "%.1e", solver.gap / solver.objective), seconds, staged.destination))
    }
}
