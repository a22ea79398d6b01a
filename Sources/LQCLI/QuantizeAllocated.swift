import Foundation
import LQFormats
import LQLoRA
import LQModel
import LQQuant
import LQTensor

extension Quantize {
    /// lq-lora and qlora-ilp: an error table per matrix and configuration, the ILP's choice under
    /// the budget, then each matrix decomposed (lq-lora) or quantized (qlora-ilp) with its choice.
    func quantizeWithAllocation() throws {
        let start = Timing.now()
        let lowRank = resolvedMethod == .lqLora
        let rank = self.rank ?? 64, alpha = self.alpha ?? 16, maxIters = self.maxIters ?? 20, grid = self.grid ?? .full
        let checkpoint = try Checkpoint(path: model)
        let modelConfig = try checkpoint.config() ?? [:]
        let targetList = targets.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let selected = try Targets.select(in: checkpoint, targets: targetList ?? Targets.decoderProjections, strict: targetList != nil)
        let fisherFile = try fisher.map { try Checkpoint(path: $0) }
        let configs = ErrorTable.candidates(grid)
        let effectiveRank = lowRank ? rank : 0

        // Shapes and checks before any work.
        var shapes: [String: [Int]] = [:]
        for name in selected {
            let e = try checkpoint.entry(name)
            if lowRank && rank >= min(e.shape[0], e.shape[1]) {
                throw CLIError("--rank \(rank) is not below the smaller side of '\(name)' \(e.shape)")
            }
            if let fisherFile {
                guard fisherFile.contains(name) else { throw CLIError("\(fisherFile.path): no Fisher values for '\(name)'") }
                let f = try fisherFile.entry(name)
                guard f.shape == e.shape else { throw CLIError("\(fisherFile.path): Fisher of '\(name)' has shape \(f.shape), the weight \(e.shape)") }
            }
            shapes[name] = e.shape
        }
        let output = try StagedDirectory(destination: out, overwrite: overwrite)
        var committed = false
        defer { if !committed { output.abandon() } }

        // 1. The error table, cached per matrix under its weights' fingerprint and the options.
        let svdMethod = svd ?? .randomized
        var cache = try ilpCache.map { try ErrorTableCache.load(path: $0) }
        let configNames = configs.map(\.name)
        var table: [[Double]] = []
        var cachedMatrices = 0
        let tableStart = Timing.now()
        let progress = Progress(total: selected.count, label: "errors")
        for (i, name) in selected.enumerated() {
            // Fingerprints (a CRC over the weights) only when there is a cache to key.
            let key = try ilpCache.map { _ in
                (weights: try checkpoint.fingerprint(name),
                 options: ErrorTableCache.optionsKey(rank: effectiveRank, svd: svdMethod, fisher: try fisherFile?.fingerprint(name)))
            }
            if let ilpCache, let key, let cached = try cache?.errors(name, weights: key.weights, options: key.options, configs: configNames, path: ilpCache) {
                table.append(cached)
                cachedMatrices += 1
            } else {
                let w = try checkpoint.floatTensor(name)
                let f = try fisherFile?.floatTensor(name)
                let errors = try ErrorTable.errors(w, configs: configs, rank: effectiveRank, fisher: f, svd: svdMethod, name: name)
                table.append(errors)
                if let ilpCache, let key {
                    cache?.store(name, weights: key.weights, options: key.options, configs: configNames, errors: errors)
                    try cache?.save(path: ilpCache)
                }
            }
            progress.update(i + 1, detail: name)
        }
        let tableSeconds = Timing.now() - tableStart

        // 2. The ILP over every matrix's configurations.
        let numels = selected.map { Int64(shapes[$0]!.reduce(1, *)) }
        let classes = zip(table, numels).map { errors, n in
            zip(configs, errors).map { BitAllocation.Item(error: $1, bitsPerParameter: $0.bitsPerParameter, parameters: n) }
        }
        let capacity = BitAllocation.Item.capacity(budget: budget!, parameters: numels.reduce(0, +))
        let solveStart = Timing.now()
        let solution: BitAllocation.Solution
        do { solution = try BitAllocation.solve(classes, capacity: capacity, timeLimit: ilpTime ?? 60) } catch let BitAllocation.Failure.infeasible(minimum, _) {
            throw CLIError(String(format: "--budget %.4f cannot be met: the smallest feasible budget is %.4f bits", budget!,
                                  BitAllocation.Item.bits(capacity: minimum, parameters: numels.reduce(0, +))))
        }
        let solveSeconds = Timing.now() - solveStart

        // 3. Each matrix with its configuration; the low-rank parts become the adapter.
        var adapterTensors: [PendingTensor] = []
        var rows: [[String: Any]] = []
        var bits = 0.0, params = 0, lowRankParams = 0
        let scale = Float(alpha / Double(rank))
        let decomposeStart = Timing.now()
        let finalProgress = Progress(total: selected.count, label: lowRank ? "decompose" : "quantize")
        var chosen: [String: (QuantizedMatrix, DType)] = [:]
        for (i, name) in selected.enumerated() {
            let config = configs[solution.choice[i]]
            let (file, entry) = try checkpoint.locate(name)
            let w = try file.floatTensor(entry)
            var row: [String: Any] = ["name": name, "shape": entry.shape, "config": reportFields(config), "bits_per_param": config.bitsPerParameter]
            if lowRank {
                let r = try Decomposition.decompose(w, config: config, rank: rank, maxIterations: maxIters,
                                                    svd: svdMethod, fisher: try fisherFile?.floatTensor(name), name: name)
                chosen[name] = (r.q, entry.dtype)
                let module = String(name.dropLast(".weight".count))
                let root = Float(scale).squareRoot()
                let a = r.l2.copy(), b = r.l1.copy()
                for k in 0..<a.count { a.pointer[k] /= root }
                for k in 0..<b.count { b.pointer[k] /= root }
                adapterTensors.append(PendingTensor(name: "base_model.model.\(module).lora_A.weight", tensor: a))
                adapterTensors.append(PendingTensor(name: "base_model.model.\(module).lora_B.weight", tensor: b))
                lowRankParams += a.count + b.count
                row["rank"] = rank
                row["iterations"] = r.errors.count
                row["iteration_errors"] = r.errors
                row["best_iteration"] = r.bestIteration + 1
                row["error_quantization_only"] = r.quantizationOnlyError
                row["error"] = r.error
                row["rel_error"] = relativeError(r.q, Decomposition.subtract(w, matmul(r.l1, r.l2)))
            } else {
                let q = try Quantizer.quantize(w, config: config, name: name)
                chosen[name] = (q, entry.dtype)
                row["rel_error"] = relativeError(q, w)
            }
            rows.append(row)
            bits += config.bitsPerParameter * Double(w.count)
            params += w.count
            finalProgress.update(i + 1, detail: "\(name) \(config.name)")
        }
        try output.writeQuantizedModel(from: checkpoint, quantized: chosen, modelConfig: modelConfig)
        if lowRank {
            try FileManager.default.createDirectory(atPath: output.path("adapter"), withIntermediateDirectories: true)
            try SafeTensorsWriter.write(adapterTensors, to: output.path("adapter/adapter_model.safetensors"))
            let modules = Array(Set(selected.map { String($0.dropLast(".weight".count).split(separator: ".").last!) })).sorted()
            try ModelFiles.writeJSON(AdapterConfig(rank: rank, alpha: alpha, targetModules: modules).peftJSON(base: checkpoint.directory),
                                     to: output.path("adapter/adapter_config.json"))
        }
        let seconds = Timing.now() - start
        let total = Double(params)
        try ModelFiles.writeJSON([
            "method": resolvedMethod.rawValue, "budget": budget!, "average_bits": bits / total,
            "average_bits_with_lowrank": (bits + 16 * Double(lowRankParams)) / total,
            "grid": grid.rawValue, "configurations": configs.count, "rank": lowRank ? rank : 0,
            "error_table": ["matrices": selected.count, "from_cache": cachedMatrices, "svd": svdMethod.rawValue,
                            "cache": ilpCache.map { $0 as Any } ?? NSNull()],
            "solver": ["status": solution.optimal ? "optimal" : "time limit", "gap": solution.gap, "relative_gap": solution.gap / max(solution.error, 1e-300),
                       "nodes": solution.nodes, "objective": solution.error],
            "seconds": ["total": seconds, "error_table": tableSeconds, "ilp": solveSeconds, "final": Timing.now() - decomposeStart],
            "parameters_quantized": params, "matrices": rows,
        ], to: output.path("quant_report.json"))
        try output.commit()
        committed = true
        print(String(format: "%@: %d matrices at %.3f bits per parameter (budget %.3f, %@%@) in %.1f s → %@", resolvedMethod.rawValue, selected.count,
                     bits / total, budget!, solution.optimal ? "optimal" : "ILP gap ", solution.optimal ? "" : String(format: "%.1e", solution.gap / solution.error),
                     seconds, output.destination))
    }
}
