import LQFormats

/// Which weights a quantization method takes: matrices named by their module.
public enum Targets {
    public static let decoderProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case noDefaultMatches(checkpoint: String, targets: [String])
        case unmatched(checkpoint: String, target: String)

        public var description: String {
            switch self {
            case let .noDefaultMatches(path, targets):
                return "none of the default targets (\(targets.joined(separator: ","))) matches a matrix in \(path); name modules with --targets"
            case let .unmatched(path, target):
                return "target '\(target)' matches no matrix in \(path) (targets name modules such as q_proj or mlp.down_proj)"
            }
        }
    }

    /// Matrices `X.weight` where X is a target or ends in "." + target, in checkpoint order.
    /// With `strict` (targets the user named) every target must match a matrix; otherwise at least one must.
    public static func select(in checkpoint: Checkpoint, targets: [String], strict: Bool) throws -> [String] {
        var used = Set<String>()
        var out: [String] = []
        for name in checkpoint.tensorNames where name.hasSuffix(".weight") {
            guard let entry = try? checkpoint.entry(name), entry.shape.count == 2 else { continue }
            let module = String(name.dropLast(".weight".count))
            if let t = targets.first(where: { module == $0 || module.hasSuffix("." + $0) }) {
                used.insert(t)
                out.append(name)
            }
        }
        if out.isEmpty && !strict { throw Failure.noDefaultMatches(checkpoint: checkpoint.path, targets: targets) }
        if strict, let missing = targets.first(where: { !used.contains($0) }) { throw Failure.unmatched(checkpoint: checkpoint.path, target: missing) }
        return out
    }

    /// `select` for an optional list the user gave: nil takes the decoder projections, leniently.
    public static func select(in checkpoint: Checkpoint, named: [String]?) throws -> [String] {
        try select(in: checkpoint, targets: named ?? decoderProjections, strict: named != nil)
    }
}
