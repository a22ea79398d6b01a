/// Which of a block's two RMSNorms.
enum BlockNorm { case input, post }

/// The operations a Llama-family decoder block is made of, on one device's activations. The
/// block's data flow is stated once (`llamaBlock`); the CPU (inference, training with a tape,
/// calibration with an observer) and the GPU each supply these operations.
protocol DecoderKernels: AnyObject {
    associatedtype Activation
    associatedtype Failure: Error
    /// RMSNorm of x with the block's `which` weight.
    func norm(_ x: Activation, _ which: BlockNorm) throws(Failure) -> Activation
    /// x·Wᵀ (+ bias, + adapter) of one projection.
    func linear(_ projection: Projection, _ x: Activation) throws(Failure) -> Activation
    /// RoPE on queries and keys, in place.
    func rotate(queries: Activation, keys: Activation) throws(Failure)
    /// Causal (grouped-query) attention of the rotated queries over the keys and values.
    func attend(queries: Activation, keys: Activation, values: Activation) throws(Failure) -> Activation
    /// x + y (the residual stream; in place when nothing keeps x).
    func residual(_ x: Activation, plus y: Activation) throws(Failure) -> Activation
    /// silu(gate) · up.
    func gatedActivation(gate: Activation, up: Activation) throws(Failure) -> Activation
}

/// A Llama decoder block, as transformers' LlamaDecoderLayer computes it: pre-norm attention and
/// SwiGLU MLP with residuals. The projections run in Projection's order (q, k, v, o, gate, up, down),
/// which is the order training's dropout masks are drawn in.
func llamaBlock<K: DecoderKernels>(_ kernels: K, _ x: K.Activation) throws(K.Failure) -> K.Activation {
    let n1 = try kernels.norm(x, .input)
    let q = try kernels.linear(.q, n1)
    let k = try kernels.linear(.k, n1)
    let v = try kernels.linear(.v, n1)
    try kernels.rotate(queries: q, keys: k)
    let attended = try kernels.attend(queries: q, keys: k, values: v)
    let x1 = try kernels.residual(x, plus: try kernels.linear(.o, attended))
    let n2 = try kernels.norm(x1, .post)
    let gate = try kernels.linear(.gate, n2)
    let up = try kernels.linear(.up, n2)
    let m = try kernels.gatedActivation(gate: gate, up: up)
    return try kernels.residual(x1, plus: try kernels.linear(.down, m))
}
