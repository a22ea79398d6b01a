import Foundation
import LQQuant

extension LQLoRAPipeline {
    /// quant_report.json of an allocating method: what the ILP chose and what each matrix became.
    public struct Report: Codable, Sendable {
        public var method: String
        public var budget: Double
        /// Average bits per parameter of the quantized parts.
        public var averageBits: Double
        /// The same with the low-rank factors counted at 16 bits.
        public var averageBitsWithLowrank: Double
        public var grid: String
        public var configurations: Int
        /// 0 without a low-rank part.
        public var rank: Int
        public var errorTable: ErrorTableSummary
        public var solver: Solver
        /// With a memory target: the target and the exact size of the weight files (left out otherwise).
        public var memory: Memory?
        public var seconds: Seconds
        public var parametersQuantized: Int
        public var matrices: [Matrix]

        enum CodingKeys: String, CodingKey {
            case method, budget, grid, configurations, rank, solver, memory, seconds, matrices
            case averageBits = "average_bits", averageBitsWithLowrank = "average_bits_with_lowrank"
            case errorTable = "error_table", parametersQuantized = "parameters_quantized"
        }

        public struct ErrorTableSummary: Codable, Sendable {
            public var matrices: Int
            /// Matrices whose errors came from the cache.
            public var fromCache: Int
            public var svd: String
            /// The cache file, nil (written as null) without one.
            public var cache: String?

            enum CodingKeys: String, CodingKey {
                case matrices, svd, cache
                case fromCache = "from_cache"
            }

            public func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(matrices, forKey: .matrices)
                try c.encode(fromCache, forKey: .fromCache)
                try c.encode(svd, forKey: .svd)
                try c.encode(cache, forKey: .cache)
            }
        }

        public struct Solver: Codable, Sendable {
            /// "optimal" or "time limit".
            public var status: String
            public var gap: Double
            public var relativeGap: Double
            public var nodes: Int
            /// The ILP's total error.
            public var objective: Double

            public var optimal: Bool { status == "optimal" }

            enum CodingKeys: String, CodingKey {
                case status, gap, nodes, objective
                case relativeGap = "relative_gap"
            }
        }

        /// The memory planner's choice (AllocationTable.plan): the target and the exact size of
        /// the weight files by part.
        public struct Memory: Codable, Sendable {
            public var target: Int64
            public var bytes: Int64
            public var quantized: Int64
            public var lowRank: Int64
            /// Tensors stored unchanged (embeddings, norms, lm_head).
            public var fixed: Int64
            /// The files' length prefixes, JSON headers and (sharded) index.
            public var headers: Int64
            /// Whether every matrix has its least error (the target holds more).
            public var unconstrained: Bool

            enum CodingKeys: String, CodingKey {
                case target, bytes, quantized, fixed, headers, unconstrained
                case lowRank = "lowrank"
            }

            public init(_ plan: AllocationTable.MemoryPlan) {
                target = plan.target
                bytes = plan.size.total
                quantized = plan.size.quantized
                lowRank = plan.size.lowRank
                fixed = plan.size.fixed
                headers = plan.size.headers
                unconstrained = plan.unconstrained
            }
        }

        public struct Seconds: Codable, Sendable {
            /// The whole command; the pipeline sets its own run time, a caller that writes the output may add to it.
            public var total: Double
            public var errorTable: Double
            public var ilp: Double
            /// The decompositions (or quantizations) with the chosen configurations.
            public var final: Double

            enum CodingKeys: String, CodingKey {
                case total, ilp, final
                case errorTable = "error_table"
            }
        }

        /// One matrix; the low-rank fields only for lq-lora (left out otherwise).
        public struct Matrix: Codable, Sendable {
            public var name: String
            public var shape: [Int]
            public var config: ConfigReport
            public var bitsPerParam: Double
            /// ‖W − (Q + L1·L2)‖ / ‖W‖ (‖W − Q‖ / ‖W‖ without a low-rank part).
            public var relError: Double
            public var rank: Int?
            public var iterations: Int?
            public var iterationErrors: [Double]?
            /// 1-based.
            public var bestIteration: Int?
            public var errorQuantizationOnly: Double?
            public var error: Double?

            enum CodingKeys: String, CodingKey {
                case name, shape, config, rank, iterations, error
                case bitsPerParam = "bits_per_param", relError = "rel_error", iterationErrors = "iteration_errors"
                case bestIteration = "best_iteration", errorQuantizationOnly = "error_quantization_only"
            }
        }
    }
}
