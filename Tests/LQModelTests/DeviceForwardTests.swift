import CKernels
import CUDAEmulation
import Foundation
import LQModel
import LQQuant
import LQTensor
import Testing

/// The device-resident forward pass (DeviceLlama) driven through the host emulation of the GPU
/// library: everything but the CUDA kernels themselves (which Tests/cuda/cuda_check.c compares with
/// the same references on a GPU). Serialized: the emulation's failure injection is process-wide.
@Suite(.serialized)
struct DeviceForwardTests {
    static let gpu = CUDABackend(api: lq_cuda_emulation().pointee)

    static func onDevice(_ model: LlamaModel) throws -> LlamaModel {
        try model.moveForwardPass(to: gpu)
        #expect(model.deviceForward != nil)
        return model
    }

    @Test(arguments: ["mha", "gqa_llama3", "tied", "qwen2_bias"])
    func logitsMatchTransformers(name: String) throws {
        let model = try Self.onDevice(try LlamaModel(directory: LlamaTests.dir + "/" + name))
        let (ids, logits, _, _) = try LlamaTests.expected(name)
        let diff = LlamaTests.maxDiff(model.forward(ids), logits)
        #expect(diff <= 1e-4, "\(name) on the device: max |Δlogit| = \(diff)")
        #expect(model.deviceForward != nil, "the device pass fell back to the CPU")
    }

    @Test func adapterLogitsMatchPEFT() throws {
        let model = try LlamaModel(directory: LlamaTests.dir + "/mha")
        _ = try model.loadAdapter(directory: LlamaTests.dir + "/mha/adapter")
        try model.moveForwardPass(to: Self.gpu)
        let (ids, _, _, file) = try LlamaTests.expected("mha")
        let diff = LlamaTests.maxDiff(model.forward(ids), try file.floatTensor("logits_adapter"))
        #expect(diff <= 1e-4, "max |Δlogit| with adapter on the device = \(diff)")
    }

    /// Prefill 10 positions, then decode one token at a time through the device KV cache.
    static func decodingWorstError(_ model: LlamaModel, reference logits: Tensor, ids: [[Int]], vocab: Int,
                                   midway: (() -> Void)? = nil) -> Float {
        let length = ids[0].count
        let cache = KVCache(config: model.config, batch: ids.count, capacity: 32)
        var worst: Float = 0
        let prefill = model.forward(ids.map { Array($0[0..<10]) }, cache: cache)
        for b in ids.indices {
            for t in 0..<10 {
                for v in 0..<vocab { worst = max(worst, abs(prefill[b * 10 + t, v] - logits.pointer[(b * length + t) * vocab + v])) }
            }
        }
        for t in 10..<length {
            if t == 16 { midway?() }
            let step = model.forward(ids.map { [$0[t]] }, cache: cache)
            for b in ids.indices {
                for v in 0..<vocab { worst = max(worst, abs(step[b, v] - logits.pointer[(b * length + t) * vocab + v])) }
            }
        }
        #expect(cache.length == length)
        return worst
    }

    /// A cache truncated to a shared prefix continues as if the positions after it had never run
    /// (the faithfulness probes cut a chain this way): 12 positions, then back to 6 and the rest of
    /// the sequence, against transformers' logits; on the CPU and on the device.
    @Test(arguments: [false, true])
    func aTruncatedCacheContinuesTheSequence(onDevice: Bool) throws {
        let dense = try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3")
        let model = onDevice ? try Self.onDevice(dense) : dense
        let (ids, logits, _, _) = try LlamaTests.expected("gqa_llama3")
        let length = ids[0].count, vocab = 128
        // The first 6 tokens, then 6 others (the sequence reversed) at positions 6..<12.
        let cache = KVCache(config: model.config, batch: ids.count, capacity: 32)
        _ = model.forward(ids.map { Array($0[0..<6]) + Array($0.reversed()[0..<6]) }, cache: cache)
        cache.truncate(to: 6)
        let rest = model.forward(ids.map { Array($0[6...]) }, cache: cache)
        var worst: Float = 0
        for b in ids.indices {
            for t in 6..<length {
                for v in 0..<vocab { worst = max(worst, abs(rest[b * (length - 6) + t - 6, v] - logits.pointer[(b * length + t) * vocab + v])) }
            }
        }
        #expect(worst <= 1e-4, "max |Δlogit| after truncating (device: \(onDevice)) = \(worst)")
        #expect(cache.length == length)
        #expect(model.deviceForward != nil || !onDevice, "the device pass fell back to the CPU")
    }

    @Test func incrementalDecodingWithTheDeviceCacheMatchesTheFullPass() throws {
        let model = try Self.onDevice(try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3"))
        let (ids, logits, _, _) = try LlamaTests.expected("gqa_llama3")
        let worst = Self.decodingWorstError(model, reference: logits, ids: ids, vocab: 128)
        #expect(worst <= 1e-4, "max |Δlogit| decoding on the device = \(worst)")
        #expect(model.deviceForward != nil)
    }

    /// A copy of the fixture with every projection quantized (the embeddings and head stay dense),
    /// a random adapter on q and down, and optionally a sliding window.
    static func quantizedModel(_ config: QuantConfig, window: Int? = nil) throws -> LlamaModel {
        try quantizedModel(window: window) { w, bias in QuantizedLinear(weight: try Quantizer.quantize(w, config: config), bias: bias) }
    }

    /// The same with every projection as `quantize` makes it from its dense weight and bias.
    static func quantizedModel(window: Int? = nil, _ quantize: (Tensor, Tensor?) throws -> any LinearOperator) throws -> LlamaModel {
        let dense = try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3")
        var rng = SeededGenerator(seed: 17)
        func quantized(_ l: any LinearOperator, adapter: Bool = false) throws -> any LinearOperator {
            guard let dense = l as? DenseLinear else { preconditionFailure("the fixture has dense weights") }
            let base = try quantize(dense.weight, l.bias)
            guard adapter else { return base }
            return LoRALinear(base: base,
                              a: Tensor(shape: [4, l.inFeatures], values: (0..<(4 * l.inFeatures)).map { _ in Float.random(in: -0.2...0.2, using: &rng) }),
                              b: Tensor(shape: [l.outFeatures, 4], values: (0..<(4 * l.outFeatures)).map { _ in Float.random(in: -0.2...0.2, using: &rng) }),
                              scale: 2)
        }
        let layers = try dense.layers.map { l in
            LlamaLayer(inputNorm: l.inputNorm, postNorm: l.postNorm, q: try quantized(l[.q], adapter: true), k: try quantized(l[.k]),
                       v: try quantized(l[.v]), o: try quantized(l[.o]), gate: try quantized(l[.gate]), up: try quantized(l[.up]),
                       down: try quantized(l[.down], adapter: true))
        }
        var c = dense.config
        c.slidingWindow = window
        return LlamaModel(config: c, embed: dense.embed, layers: layers, norm: dense.norm, lmHead: dense.lmHead)
    }

    /// Quantized products take the fused GEMV (≤ 8 rows) and the dequantize + GEMM path (more rows);
    /// the CPU forward pass of the same model is the reference.
    @Test(arguments: ["nf4-dq", "nf3", "lq-window"])
    func quantizedModelsMatchTheirCPUForwardPass(variant: String) throws {
        let config = variant == "nf3" ? QuantConfig.plain(bits: 3) : QuantConfig.nf4DoubleQuant
        let model = try Self.quantizedModel(config, window: variant == "lq-window" ? 5 : nil)
        let (ids, _, _, _) = try LlamaTests.expected("gqa_llama3")
        let reference = model.forward(ids)  // on the CPU: no device pass yet
        let device = try Self.onDevice(model)
        #expect(device.deviceForward?.quantizedLinears == 14)
        let full = device.forward(ids)
        #expect(LlamaTests.maxDiff(full, reference) <= 1e-4, "\(variant): max |Δlogit| = \(LlamaTests.maxDiff(full, reference))")
        let worst = Self.decodingWorstError(device, reference: reference, ids: ids, vocab: 128)
        #expect(worst <= 1e-4, "\(variant) decoding: max |Δlogit| = \(worst)")
        #expect(device.deviceForward != nil)
    }

    /// GPTQ's uniform integers (round to nearest in groups of 32; GPTQ with act-order's g_idx on a
    /// random Hessian, 3-bit asymmetric) multiply on the device in their own storage, matching the
    /// CPU forward pass in full passes (GEMM) and decoding (the fused GEMV).
    @Test(arguments: ["rtn4-g32", "gptq3-act"])
    func uniformModelsMatchTheirCPUForwardPass(variant: String) throws {
        var rng = SeededGenerator(seed: 23)
        let model = try Self.quantizedModel { w, bias in
            let rows = w.shape[0], cols = w.shape[1]
            if variant == "rtn4-g32" {
                let q = UniformQuantization.roundToNearest(w.pointer, rows: rows, cols: cols, quantizer: UniformQuantizer(bits: 4, symmetric: true), groupSize: 32)
                return UniformLinear(weight: q.withHalfScales(), bias: bias)
            }
            let x = Tensor.gaussian([2 * cols, cols], using: &rng, scale: 1)
            let options = GPTQ.Options(bits: 3, groupSize: 32, symmetric: false, actOrder: true)
            let q = try GPTQ.quantize(w, hessian: matmul(x, transposeA: true, x), options: options).quantization.withHalfScales()
            #expect(!q.sequentialGroups)
            return UniformLinear(weight: q, bias: bias)
        }
        let (ids, _, _, _) = try LlamaTests.expected("gqa_llama3")
        let reference = model.forward(ids)
        let device = try Self.onDevice(model)
        #expect(device.deviceForward?.quantizedLinears == 14, "the uniform projections were not uploaded in their storage")
        let full = device.forward(ids)
        #expect(LlamaTests.maxDiff(full, reference) <= 1e-4, "\(variant): max |Δlogit| = \(LlamaTests.maxDiff(full, reference))")
        let worst = Self.decodingWorstError(device, reference: reference, ids: ids, vocab: 128)
        #expect(worst <= 1e-4, "\(variant) decoding: max |Δlogit| = \(worst)")
        #expect(device.deviceForward != nil)
    }

    /// Perplexity with the logits and their log-softmax on the device (only one number per token
    /// returns), against PyTorch's runs of both protocols (PerplexityTests' references).
    @Test func perplexityOnTheDeviceMatchesTransformersAndLlamaCpp() throws {
        let model = try Self.onDevice(try LlamaModel(directory: LlamaTests.dir + "/mha"))
        let file = PerplexityTests.file
        func reference(_ key: String) throws -> Double { file.bytes(of: try file.entry(key)).loadUnaligned(as: Double.self) }
        let tokens = try file.floatTensor("tokens").array.map { Int($0) }
        for (ctx, stride) in [(16, 16), (16, 6), (50, 50)] {
            let result = try Perplexity.evaluate(model, tokens: tokens, method: .huggingFace(context: ctx, stride: stride), batch: 3)
            let expected = try reference("hf_\(ctx)_\(stride)")
            #expect(abs(result.perplexity - expected) / expected < 1e-5, "ctx \(ctx) stride \(stride): \(result.perplexity) vs \(expected)")
        }
        let cpp = try Perplexity.evaluate(model, tokens: tokens, method: .llamaCpp(context: 16, bos: nil))
        #expect(abs(cpp.perplexity - (try reference("llamacpp_16"))) / cpp.perplexity < 1e-5)
        #expect(model.deviceForward != nil, "the device pass fell back to the CPU")
        // Row by row, the device's log-likelihoods are the CPU's.
        let cpu = try LlamaModel(directory: LlamaTests.dir + "/mha")
        let ids = Array(tokens.prefix(20))
        let hidden = cpu.hiddenStates([ids])
        let targets = Array(ids[1...])
        let want = cpu.negativeLogLikelihoods(hidden, rows: 0..<19, targets: targets)
        let got = model.negativeLogLikelihoods(hidden, rows: 0..<19, targets: targets)
        let worst = zip(want, got).map { abs($0 - $1) / abs($0) }.max() ?? 1
        #expect(worst < 1e-6, "largest relative difference of a token's log-likelihood: \(worst)")
    }

    /// Zero-shot scoring with the pass on the device, whose caches cannot be forked: every request
    /// runs whole, padded in one batch, and equals the CPU's run of each request alone.
    @Test func multipleChoiceOnTheDeviceEqualsEachRequestAloneOnTheCPU() throws {
        let dir = LlamaTests.dir + "/gqa_llama3"
        let model = try Self.onDevice(try LlamaModel(directory: dir))
        #expect(!model.forksCaches)
        try BatchedScoringTests.checkMixedGroups(model, window: 32, oracle: try LlamaModel(directory: dir))
        #expect(model.deviceForward != nil, "the device pass fell back to the CPU")
    }

    /// A GPU failure mid-way through decoding: the model says so once, refills its cache on the CPU
    /// from the tokens seen and goes on with the same logits.
    @Test func aFailingDeviceFallsBackToTheCPUWithoutLosingTheSequence() throws {
        let model = try Self.onDevice(try LlamaModel(directory: LlamaTests.dir + "/gqa_llama3"))
        let (ids, logits, _, _) = try LlamaTests.expected("gqa_llama3")
        defer { lq_cuda_emulation_fail_after(-1) }
        let worst = Self.decodingWorstError(model, reference: logits, ids: ids, vocab: 128, midway: { lq_cuda_emulation_fail_after(7) })
        #expect(worst <= 1e-4, "max |Δlogit| across the fallback = \(worst)")
        #expect(model.deviceForward == nil, "the model should have left the device")

        // Weights that cannot be copied: the model stays on the CPU and says why.
        lq_cuda_emulation_fail_after(3)
        let other = try LlamaModel(directory: LlamaTests.dir + "/mha")
        #expect(throws: CUDAFailure.self) { try other.moveForwardPass(to: Self.gpu) }
        #expect(other.deviceForward == nil)
    }
}
