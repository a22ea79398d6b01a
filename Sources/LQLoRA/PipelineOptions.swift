import Foundation
import LQQuant

extension LQLoRAPipeline {
    /// LQ-LoRA (quantized + low-rank) or QLoRA with its bits chosen by the ILP (no low-rank part).
    public enum Method: String, CaseIterable, Sendable {
        case lqLora = "lq-lora"
        case qloraILP = "qlora-ilp"
    }

    /// Everything a run depends on; defaults are the paper's (rank 64, alpha 16, 20 iterations).
    public struct Options: Sendable {
        public var method: Method
        /// Average bits per parameter of the quantized parts (the low-rank part is extra).
        public var budget: Double
        /// Bytes the weight files `write` makes must fit in (`outputSizing`): when set, the least
        /// error that fits replaces `budget`.
        public var memory: Int64?
        /// LQ-LoRA: rank of the low-rank part, which becomes the LoRA rank of the adapter.
        public var rank = 64
        /// LQ-LoRA: the adapter's lora_alpha (its scale is alpha / rank).
        public var alpha = 16.0
        /// LQ-LoRA: most decomposition iterations per matrix.
        public var maxIterations = 20
        /// The candidate configurations of every matrix.
        public var grid: ErrorTable.Grid = .full
        /// The SVD of the error table and of the decompositions.
        public var svd: Decomposition.SVDMethod = .randomized
        /// A diagonal Fisher file (lqlora fisher) that weights every error, or nil.
        public var fisher: String?
        /// A JSON file caching the error table between runs (ErrorTableCache), or nil.
        public var ilpCache: String?
        /// Seconds the ILP may search before reporting its gap.
        public var ilpTimeLimit: TimeInterval = 60
        /// Modules to take (q_proj, mlp.down_proj, ...); nil takes Targets.decoderProjections.
        public var targets: [String]?

        public init(method: Method, budget: Double) {
            self.method = method
            self.budget = budget
        }

        var lowRank: Bool { method == .lqLora }
        /// The rank the error table removes: none without a low-rank part.
        var tableRank: Int { lowRank ? rank : 0 }
    }

    /// The three passes over the matrices, in order.
    public enum Stage: String, Sendable {
        case errorTable = "errors"
        case decompose
        case quantize
    }

    /// Progress: a stage begins over `matrices`, then each matrix of it is done (`index` from 0);
    /// in the last stage `config` is the configuration the ILP chose.
    public enum Event: Equatable, Sendable {
        case began(Stage, matrices: Int)
        case matrix(Stage, index: Int, name: String, config: QuantConfig?)
    }

    /// What a run refuses, naming the tensor, file or option.
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case invalid(option: String, detail: String)
        case rankTooLarge(rank: Int, tensor: String, shape: [Int])
        case fisherMissing(path: String, tensor: String)
        case fisherShape(path: String, tensor: String, fisher: [Int], weight: [Int])
        case budgetInfeasible(budget: Double, minimum: Double)

        public var description: String {
            switch self {
            case let .invalid(option, detail): return "\(option) \(detail)"
            case let .rankTooLarge(rank, tensor, shape): return "--rank \(rank) is not below the smaller side of '\(tensor)' \(shape)"
            case let .fisherMissing(path, tensor): return "\(path): no Fisher values for '\(tensor)'"
            case let .fisherShape(path, tensor, fisher, weight): return "\(path): Fisher of '\(tensor)' has shape \(fisher), the weight \(weight)"
            case let .budgetInfeasible(budget, minimum):
                return String(format: "--budget %.4f cannot be met: the smallest feasible budget is %.4f bits", budget, minimum)
            }
        }
    }
}
