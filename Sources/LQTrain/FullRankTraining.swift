import CKernels
import Foundation
import LQFormats
import LQModel
import LQQuant
import LQTensor

/// Q-GaLore's settings (`qgalore.*`), with the reference's defaults for finetuning.
public struct QGaLoreSettings: Sendable, Equatable {
    public var rank = 128, updateProjGap = 200, scale = 0.25
    public var projBits = 4, projGroupSize = 256
    public var weightBits = 8, weightGroupSize = 256, stochasticRounding = true
    public var queueSize = 5, cosThreshold = 0.4, gammaProj = 2.0
    public init() {}
}

/// Full-parameter training of every projection of a model (q, k, v, o, gate, up, down; embeddings,
/// norms and the LM head stay frozen), each matrix updated as soon as its gradient arrives in the
/// backward pass, as the reference's per-layer mode steps inside its backward hook: one full-rank
/// gradient exists at a time. Three methods:
///   full:     AdamW on the fp32 weight (train.optimizer's arithmetic and decay);
///   galore:   fp32 weights; the gradient projected to rank r (GaLoreProjector), Adam on that,
///             the update projected back × scale, then p −= lr·wd·p;
///   q-galore: the same with the weights as 8- or 4-bit group codes (dequantized, updated and
///             requantized each step, stochastically rounded from a seeded stream) and 4-bit
///             projections (VITA-Group/Q-GaLore's q_galore_adamw8bit.py).
/// This is the GradientSink of the backward pass: `beginStep`, the backward, then `finishStep`.
public final class FullRankTraining: GradientSink {
    /// One trained matrix: its weight as the model computes with it, and its optimizer state.
    public final class Matrix {
        public let site: LinearSite
        public let weight: Weight
        public let projector: GaLoreProjector?
        let optimizer: any Optimizer

        init(site: LinearSite, weight: Weight, projector: GaLoreProjector?, optimizer: any Optimizer) {
            self.site = site
            self.weight = weight
            self.projector = projector
            self.optimizer = optimizer
        }

        public var rows: Int { weight.shape[0] }
        public var cols: Int { weight.shape[1] }
    }

    public enum Weight {
        case dense(Tensor)
        case codes(GroupQuantizedMatrix)

        public var shape: [Int] {
            switch self {
            case let .dense(w): return w.shape
            case let .codes(q): return [q.rows, q.cols]
            }
        }

        /// The weight in fp32: the tensor itself, or a dequantized copy.
        public var values: Tensor {
            switch self {
            case let .dense(w): return w
            case let .codes(q): return q.dequantized()
            }
        }
    }

    public let method: TrainConfig.Method
    public let settings: QGaLoreSettings
    public let matrices: [Matrix]
    let weightDecay: Double, seed: UInt64
    private let index: [LinearSite: Int]
    /// Updates taken so far.
    public private(set) var step = 0
    private var learningRate = 0.0, skipping = false, received = 0, squares = 0.0
    private var failure: Error?

    /// Replaces every projection of `model` by its trained form (a dense base only; a rank that is
    /// not below min(m, n) of every matrix is refused by name).
    public init(model: LlamaModel, config: TrainConfig) throws {
        precondition(config.method.trainsFullRank, "FullRankTraining runs the full, galore and q-galore methods")
        method = config.method
        settings = config.qgalore
        weightDecay = config.adam.weightDecay
        seed = UInt64(config.seed)
        var lowRankAdam = config.adam
        lowRankAdam.weightDecay = 0  // decayed after the projection back, on the full weight
        var matrices: [Matrix] = []
        for (l, layer) in model.layers.enumerated() {
            for (p, linear) in layer.linears {
                let site = LinearSite.projection(layer: l, p), m = linear.outFeatures, n = linear.inFeatures
                guard linear is DenseLinear || linear is HalfLinear else {
                    throw TrainingError.fullRankBase(path: config.model, detail: "\(site.weightName) is already quantized; method \(method.rawValue) trains a dense (16- or 32-bit) model")
                }
                let w = linear.denseWeight()  // an fp32 copy the optimizer owns
                let weight: Weight, projector: GaLoreProjector?, optimizer: any Optimizer
                if method == .full {
                    weight = .dense(w)
                    projector = nil
                    optimizer = config.makeOptimizer(counts: [m * n], settings: config.adam)
                    layer[p] = DenseLinear(weight: w, bias: linear.bias)
                } else {
                    guard settings.rank < min(m, n) else {
                        throw ConfigError.badValue(key: "qgalore.rank", detail: "is \(settings.rank), not below min(m, n) = \(min(m, n)) of \(site.weightName) [\(m), \(n)]")
                    }
                    let schedule = GaLoreProjector.Schedule(gap: settings.updateProjGap, queueSize: settings.queueSize,
                                                            threshold: settings.cosThreshold, gamma: settings.gammaProj)
                    let quantized = method == .qGalore
                    let g = GaLoreProjector(rows: m, cols: n, rank: settings.rank, scale: Float(settings.scale), schedule: schedule,
                                            storage: quantized ? .quantized(bits: settings.projBits, groupSize: settings.projGroupSize) : .full)
                    projector = g
                    optimizer = config.makeOptimizer(counts: [g.lowRankShape.reduce(1, *)], settings: lowRankAdam)
                    if quantized {
                        let q = GroupQuantizedMatrix(w.pointer, rows: m, cols: n, bits: settings.weightBits, groupSize: settings.weightGroupSize)
                        weight = .codes(q)
                        layer[p] = GroupQuantizedLinear(weight: q, bias: linear.bias)
                    } else {
                        weight = .dense(w)
                        layer[p] = DenseLinear(weight: w, bias: linear.bias)
                    }
                }
                matrices.append(Matrix(site: site, weight: weight, projector: projector, optimizer: optimizer))
            }
        }
        self.matrices = matrices
        index = Dictionary(uniqueKeysWithValues: matrices.enumerated().map { ($1.site, $0) })
        lq_release_free_memory()  // the loader's fp32 projections, now freed, would otherwise stay in malloc's heap
    }

    /// Weights trained.
    public var parameterCount: Int { matrices.reduce(0) { $0 + $1.rows * $1.cols } }

    /// Bytes of training state between steps: weights as kept, projections, optimizer moments.
    public var stateBytes: Int {
        matrices.reduce(0) { total, m in
            let weight: Int
            switch m.weight {
            case let .dense(w): weight = 4 * w.count
            case let .codes(q): weight = q.storageBytes
            }
            return total + weight + (m.projector?.stateBytes ?? 0) + m.optimizer.stateBytes
        }
    }

    // MARK: - One step

    /// Before the step's backward pass: the learning rate its updates use.
    public func beginStep(learningRate: Double) {
        self.learningRate = learningRate
        skipping = false
        received = 0
        squares = 0
        failure = nil
    }

    public func backwardWillBegin(loss: TokenLoss) {
        skipping = !(loss.sum.isFinite && loss.divergence.isFinite)
    }

    public func wantsWeightGradient(at site: LinearSite) -> Bool { index[site] != nil }

    public func receiveWeightGradient(_ gradient: Tensor, at site: LinearSite) {
        guard let i = index[site] else { return }
        received += 1
        guard !skipping, failure == nil else { return }
        var s = 0.0
        for k in 0..<gradient.count { s += Double(gradient.pointer[k]) * Double(gradient.pointer[k]) }
        squares += s
        do { try update(i, gradient: gradient) } catch { failure = error }
    }

    /// After the backward pass: the step's global gradient norm (of the full-rank gradients).
    public func finishStep() throws -> Double {
        if let failure { throw failure }
        precondition(received == matrices.count, "the backward pass delivered \(received) of \(matrices.count) weight gradients")
        step += 1
        return squares.squareRoot()
    }

    func update(_ i: Int, gradient g: Tensor) throws {
        let m = matrices[i], lr = learningRate
        guard let projector = m.projector else {
            guard case let .dense(w) = m.weight else { preconditionFailure("full AdamW keeps fp32 weights") }
            m.optimizer.update(values: [w], grads: [g], learningRate: lr)
            return
        }
        let w = m.weight.values
        let low = try projector.project(g, iteration: step)
        let delta = Tensor(zeros: low.shape)  // Adam's update of a zero parameter: the step itself
        m.optimizer.update(values: [delta], grads: [low], learningRate: lr)
        let back = projector.projectBack(delta)
        let decay = Float(-lr * weightDecay)
        Parallel.forEach(w.count, minChunk: 1 << 15) { r in
            for k in r {
                w.pointer[k] += back.pointer[k]
                // p.add_(p, alpha=−lr·wd), as torch's vectorized add computes it: one fused multiply-add.
                if decay != 0 { w.pointer[k] = w.pointer[k].addingProduct(decay, w.pointer[k]) }
            }
        }
        if case let .codes(q) = m.weight {
            q.quantize(w.pointer, rounding: settings.stochasticRounding ? .stochastic(keys: [seed, Self.roundingStream, UInt64(i), UInt64(step)]) : .nearest)
        }
    }

    /// Tags the stochastic-rounding streams apart from any other stream of the run: "QGAL".
    static let roundingStream: UInt64 = 0x5147_414C

    // MARK: - Checkpoints and output

    /// checkpoint/weights.safetensors (fp32 weights, or codes with their scales and zero points),
    /// projectors.safetensors + projectors.json, optimizer.safetensors.
    public func save(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var weights: [PendingTensor] = [], projectors: [PendingTensor] = [], moments: [PendingTensor] = []
        var scalars: [String: Any] = [:]
        for m in matrices {
            let name = m.site.weightName
            switch m.weight {
            case let .dense(w): weights.append(PendingTensor(name: name, tensor: w))
            case let .codes(q):
                weights += [PendingTensor(name: name + ".codes", dtype: .u8, shape: [q.codes.count], bytes: q.codes),
                            PendingTensor(name: name + ".scales", tensor: Tensor(shape: [q.scales.count], values: q.scales)),
                            PendingTensor(name: name + ".zeros", tensor: Tensor(shape: [q.zeros.count], values: q.zeros))]
            }
            if let projector = m.projector {
                let (tensors, values) = projector.state(name: name)
                projectors += tensors
                scalars[name] = values
            }
            moments += m.optimizer.stateTensors(names: [name])
        }
        try SafeTensorsWriter.write(weights, to: directory + "/weights.safetensors")
        try SafeTensorsWriter.write(moments, to: directory + "/optimizer.safetensors")
        if method != .full {
            try SafeTensorsWriter.write(projectors, to: directory + "/projectors.safetensors")
            try Data(JSONText.serialize(scalars).utf8).writeAtomically(to: directory + "/projectors.json")
        }
    }

    /// Restores what `save` wrote, after `step` updates.
    public func load(from directory: String, step: Int) throws {
        let weights = StateReader(file: try SafeTensorsFile(path: directory + "/weights.safetensors"))
        let moments = try SafeTensorsFile(path: directory + "/optimizer.safetensors")
        var projectors: StateReader?, scalars: [String: Any] = [:]
        if method != .full {
            projectors = StateReader(file: try SafeTensorsFile(path: directory + "/projectors.safetensors"))
            let path = directory + "/projectors.json"
            guard let data = FileManager.default.contents(atPath: path), let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TrainingError.badCheckpoint(path: path, detail: "is missing or not a JSON object")
            }
            scalars = json
        }
        for m in matrices {
            let name = m.site.weightName
            switch m.weight {
            case let .dense(w): w.pointer.update(from: try weights.floats(name, w.count), count: w.count)
            case let .codes(q):
                q.restore(codes: try weights.bytes(name + ".codes", q.codes.count), scales: try weights.floats(name + ".scales", q.groupCount),
                          zeros: try weights.floats(name + ".zeros", q.groupCount))
            }
            if let projector = m.projector, let projectors {
                try projector.load(name: name, from: projectors, scalars: scalars[name] as? [String: Any] ?? [:])
            }
            try m.optimizer.load(moments, names: [name], step: step)
        }
        self.step = step
    }
}

extension TrainConfig.Method {
    /// Whether the method trains the projections themselves (no adapters).
    public var trainsFullRank: Bool { self != .lora }
}

extension Trainer {
    /// output_dir/model: the base's files with every tensor in output_dtype, the projections as
    /// trained (dequantized from their codes with q-galore), a tensor at a time; written under a
    /// temporary name and renamed.
    func writeFullModel() throws -> String {
        let matrices = Dictionary(uniqueKeysWithValues: fullRank!.matrices.map { ($0.site.weightName, $0) })
        let directory = config.outputDir + "/model", temp = directory + ".partial"
        let fm = FileManager.default
        try? fm.removeItem(atPath: temp)
        try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)
        let checkpoint = try Checkpoint(path: config.model), dtype = config.outputDType.dtype
        let tensors = try checkpoint.tensorNames.map { name in
            PendingTensor(name: name, dtype: dtype, shape: try checkpoint.entry(name).shape) { raw in
                let w = try matrices[name]?.weight.values ?? checkpoint.floatTensor(name)
                DTypeConversion.fromFloat32(UnsafeBufferPointer(w.buffer), dtype: dtype, into: raw)
            }
        }
        try CheckpointWriter.write(tensors, toDirectory: temp)
        var modelConfig = try checkpoint.config() ?? [:]
        // transformers 5 reads "dtype", earlier versions "torch_dtype".
        for key in ["torch_dtype", "dtype"] { modelConfig[key] = dtype.torchName }
        try ModelFiles.writeJSON(modelConfig, to: temp + "/config.json")
        try ModelFiles.copySideFiles(from: checkpoint.directory, to: temp)
        try AtomicDirectory.replace(directory, with: temp)
        return directory
    }
}
