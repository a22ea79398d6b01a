import LQModel
import LQQuant
import LQTensor
import Testing

/// int8 activations in a whole model: the tiny GQA fixture with every projection in NF4 (and NF3)
/// and an adapter on q and down (DeviceForwardTests.quantizedModel). The exact path is the oracle.
struct Int8ActivationModelTests {
    /// What the int8 path may add to the logits: the largest |Δlogit| as a share of the exact logits'
    /// largest |value|, and the RMS of Δlogit as a share of the logits' RMS. Measured on this random
    /// fixture (hidden size 64: two activation blocks per row, 14 products in a row): NF4 2.5 % and
    /// 2.0 % (full pass), 2.3 % and 1.9 % (decoding); NF3 2.7 % and 1.7 %, 1.9 % and 1.5 %.
    static let largestShare: Float = 0.05, rmsShare: Float = 0.04

    /// (max |a − b| / max |b|, RMS(a − b) / RMS(b)) over the first `count` values.
    static func shares(_ a: [Float], _ b: [Float]) -> (largest: Float, rms: Float) {
        let d: [Float] = zip(a, b).map { $0 - $1 }
        func rms(_ v: [Float]) -> Float { (v.map { $0 * $0 }.reduce(0, +) / Float(max(v.count, 1))).squareRoot() }
        let worst: Float = d.map(abs).max() ?? 0, top: Float = b.map(abs).max() ?? 1
        return (worst / top, rms(d) / rms(b))
    }

    /// The full pass with int8 activations everywhere (eval's path) within the tolerance; decoding
    /// with int8 for single rows (generate's path): the prompt's logits stay the exact bits, every
    /// decoded step within the tolerance.
    @Test(arguments: ["nf4", "nf3"])
    func int8LogitsStayNearTheExactOnes(format: String) throws {
        let config = format == "nf3" ? QuantConfig.plain(bits: 3) : QuantConfig.nf4DoubleQuant
        let model = try DeviceForwardTests.quantizedModel(config)
        let (ids, _, _, _) = try LlamaTests.expected("gqa_llama3")
        let exact = model.forward(ids)
        model.useActivations(.int8)
        let full = model.forward(ids)
        #expect(full.array != exact.array, "\(format): the int8 path ran")
        let f = Self.shares(full.array, exact.array)
        #expect(f.largest <= Self.largestShare && f.rms <= Self.rmsShare, "\(format): Δlogit \(f)")

        model.useActivations(.int8Decode)
        let length = ids[0].count, vocab = exact.shape[1]
        let cache = KVCache(config: model.config, batch: ids.count, capacity: length)
        let prefill = model.forward(ids.map { Array($0[0..<10]) }, cache: cache)  // more rows than a decoding step: exact
        let reference = KVCache(config: model.config, batch: ids.count, capacity: length)
        model.useActivations(.exact)
        #expect(prefill.array == model.forward(ids.map { Array($0[0..<10]) }, cache: reference).array, "\(format): the prompt's logits are the exact ones")
        model.useActivations(.int8Decode)
        var decoded: [Float] = [], wanted: [Float] = []
        for t in 10..<length {
            let step = model.forward(ids.map { [$0[t]] }, cache: cache)
            for b in ids.indices {
                for v in 0..<vocab {
                    decoded.append(step[b, v])
                    wanted.append(exact.pointer[(b * length + t) * vocab + v])
                }
            }
        }
        let d = Self.shares(decoded, wanted)
        #expect(d.largest <= Self.largestShare && d.rms <= Self.rmsShare, "\(format) decoding: Δlogit \(d)")
    }

    /// The outlier residual in the whole model: with τ = 0 every block of x carries its residual (the
    /// fixture's rows are two blocks, so τ = 2 could flag none: d_j ≤ Σ d = 2 · mean), which leaves
    /// the int8 codebook's error: the logits within the tolerance above and closer to the exact ones
    /// than plain Q8_0's (RMS share); the full pass and decoding.
    @Test(arguments: ["nf4", "nf3"])
    func outlierResidualLogitsAreCloserToTheExactOnes(format: String) throws {
        let config = format == "nf3" ? QuantConfig.plain(bits: 3) : QuantConfig.nf4DoubleQuant
        let model = try DeviceForwardTests.quantizedModel(config)
        let (ids, _, _, _) = try LlamaTests.expected("gqa_llama3")
        let exact = model.forward(ids)
        model.useActivations(.int8, outlierRatio: .infinity)
        let plain = Self.shares(model.forward(ids).array, exact.array)
        model.useActivations(.int8, outlierRatio: 0)
        let residual = Self.shares(model.forward(ids).array, exact.array)
        #expect(residual.largest <= Self.largestShare && residual.rms <= Self.rmsShare && residual.rms < plain.rms,
                "\(format): Δlogit plain \(plain), with the residual \(residual)")
        // Decoding one token at a time with the residual: each step's logits within the tolerance.
        model.useActivations(.int8Decode, outlierRatio: 0)
        let length = ids[0].count, vocab = exact.shape[1]
        let cache = KVCache(config: model.config, batch: ids.count, capacity: length)
        var decoded: [Float] = [], wanted: [Float] = []
        for t in 0..<length {
            let step = model.forward(ids.map { [$0[t]] }, cache: cache)
            for b in ids.indices {
                for v in 0..<vocab {
                    decoded.append(step[b, v])
                    wanted.append(exact.pointer[(b * length + t) * vocab + v])
                }
            }
        }
        let d = Self.shares(decoded, wanted)
        #expect(d.largest <= Self.largestShare && d.rms <= Self.rmsShare, "\(format) decoding with the residual: Δlogit \(d)")
    }

    /// Setting the exact path (the default) back leaves every logit as a model that never left it.
    @Test func theExactPathIsUnchanged() throws {
        let model = try DeviceForwardTests.quantizedModel(.nf4DoubleQuant)
        let untouched = try DeviceForwardTests.quantizedModel(.nf4DoubleQuant)
        let (ids, _, _, _) = try LlamaTests.expected("gqa_llama3")
        let before = untouched.forward(ids)
        model.useActivations(.int8)
        _ = model.forward(ids)
        model.useActivations(.exact)
        #expect(model.forward(ids).array == before.array)
        let step = ids.map { [$0[0]] }
        #expect(model.forward(step).array == untouched.forward(step).array, "a single row (the fused GEMV)")
    }
}
