/// The seven projections of a Llama-family decoder block, in the order a block computes them
/// (which is also the order adapter dropout draws its masks in), by their checkpoint names.
public enum Projection: String, CaseIterable, Sendable, Hashable {
    case q = "self_attn.q_proj", k = "self_attn.k_proj", v = "self_attn.v_proj", o = "self_attn.o_proj"
    case gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj"

    /// The module's full name within a block ("self_attn.q_proj").
    public var module: String { rawValue }

    /// The name PEFT's target_modules and our configs use ("q_proj").
    public var shortName: String { String(rawValue.split(separator: ".").last!) }

    /// Every short name, in block order.
    public static let shortNames = allCases.map(\.shortName)

    /// The projection a module name ("q_proj" or "self_attn.q_proj") names, if any.
    public init?(module: String) {
        guard let p = Self.allCases.first(where: { $0.rawValue == module || $0.shortName == module }) else { return nil }
        self = p
    }
}

/// Where a linear layer sits in a model: a block's projection or the LM head.
public enum LinearSite: Sendable, Hashable {
    case projection(layer: Int, Projection)
    case head

    /// The module's checkpoint name without ".weight" ("model.layers.3.self_attn.q_proj", "lm_head").
    public var module: String {
        switch self {
        case let .projection(layer, p): return "model.layers.\(layer).\(p.module)"
        case .head: return "lm_head"
        }
    }

    /// The weight's checkpoint name ("model.layers.3.self_attn.q_proj.weight").
    public var weightName: String { module + ".weight" }
}
