import CUDAEmulation
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// Quantized products through liblqlora_cuda.so against the CPU kernels, as the model calls them
/// (upload on first use, the host entry point, both directions). Where the library and a GPU are
/// present (scripts/build-cuda.sh; the library next to the test binary or LQLORA_CUDA_LIBRARY) they
/// run there; elsewhere through the host emulation, which checks the plumbing, not the kernels.
struct CUDATests {
    /// The real library on a GPU when there is one, else the host emulation; the test output says which.
    static let backend: (gpu: CUDABackend, name: String) = {
        if let real = try? CUDABackend.loaded.get() { return (real, "liblqlora_cuda.so on a GPU") }
        return (CUDABackend(api: lq_cuda_emulation().pointee), "the host emulation (no GPU library loaded)")
    }()
    static var gpu: CUDABackend { backend.gpu }

    @Test(arguments: [(QuantConfig.nf4DoubleQuant, 1), (.nf4DoubleQuant, 6), (.qlora(bits: 3), 40), (.qlora(bits: 2), 3)])
    func productsMatchTheCPU(config: QuantConfig, n: Int) throws {
        let gpu = Self.gpu
        print("CUDATests: \(config.name) n=\(n) through \(Self.backend.name)")
        var rng = SeededGenerator(seed: 11)
        let q = try Quantizer.quantize(Tensor.gaussian([200, 136], using: &rng, scale: 0.05), config: config)
        let x = Tensor.gaussian([n, 136], using: &rng, scale: 1)
        let want = q.matmul(x, gpu: nil), got = q.matmul(x, gpu: gpu)
        let dy = Tensor.gaussian([n, 200], using: &rng, scale: 1)
        let dxCPU = Tensor.gaussian([n, 136], using: &rng, scale: 1), dxGPU = dxCPU.copy()
        q.accumulateTransposedProduct(dy, into: dxCPU, gpu: nil)
        q.accumulateTransposedProduct(dy, into: dxGPU, gpu: gpu)
        for (a, b, label) in [(got, want, "X·Wᵀ"), (dxGPU, dxCPU, "dY·W + dX")] {
            let scale = b.array.map(abs).max() ?? 1
            let worst = zip(a.array, b.array).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4 * scale, "\(config.name) n=\(n) \(label) on \(Self.backend.name): max difference \(worst) of \(scale)")
        }
    }

    /// A GPTQ matrix of `bits` in groups of `group` (nil: one per row), act-order or not, for a random
    /// weight [rows, cols] and the Hessian of random inputs.
    static func gptqMatrix(bits: Int, group: Int?, actOrder: Bool, rows: Int, cols: Int, seed: UInt64) throws -> UniformQuantization {
        var rng = SeededGenerator(seed: seed)
        let w = Tensor.gaussian([rows, cols], using: &rng, scale: 0.05), x = Tensor.gaussian([3 * cols, cols], using: &rng, scale: 1)
        let h = matmul(x, transposeA: true, x)
        let options = GPTQ.Options(bits: bits, groupSize: group, symmetric: bits != 3, actOrder: actOrder)
        return try GPTQ.quantize(w, hessian: h, options: options).quantization.withHalfScales()
    }

    /// GPTQ's uniform integers the same way: sequential groups and act-order's g_idx, a group not a
    /// multiple of 8, one group per row; the fused GEMV (≤ 8 rows) and the dequantize + GEMM path.
    @Test(arguments: [(4, 32, false, 1), (4, 32, true, 3), (3, 20, false, 8), (3, 64, true, 40), (8, nil, false, 2), (2, 128, true, 9)])
    func uniformProductsMatchTheCPU(bits: Int, group: Int?, actOrder: Bool, n: Int) throws {
        let gpu = Self.gpu
        print("CUDATests: uniform \(bits)-bit g\(group ?? -1)\(actOrder ? " act-order" : "") n=\(n) through \(Self.backend.name)")
        let q = try Self.gptqMatrix(bits: bits, group: group, actOrder: actOrder, rows: 72, cols: 256, seed: 21)
        #expect(q.sequentialGroups == !actOrder)
        var rng = SeededGenerator(seed: 22)
        let x = Tensor.gaussian([n, 256], using: &rng, scale: 1), dy = Tensor.gaussian([n, 72], using: &rng, scale: 1)
        let dxCPU = Tensor.gaussian([n, 256], using: &rng, scale: 1), dxGPU = dxCPU.copy()
        let before = lq_cuda_emulation_calls()
        let got = q.matmul(x, gpu: gpu), want = q.matmul(x, gpu: nil)
        q.accumulateTransposedProduct(dy, into: dxCPU, gpu: nil)
        q.accumulateTransposedProduct(dy, into: dxGPU, gpu: gpu)
        if Self.backend.name.hasPrefix("the host") { #expect(lq_cuda_emulation_calls() > before, "the products never reached the device") }
        for (a, b, label) in [(got, want, "X·Wᵀ"), (dxGPU, dxCPU, "dY·W + dX")] {
            let scale = b.array.map(abs).max() ?? 1
            let worst = zip(a.array, b.array).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4 * scale, "uniform b\(bits) n=\(n) \(label) on \(Self.backend.name): max difference \(worst) of \(scale)")
        }
        // A changed copy is a new matrix on the device, not the old one's upload.
        var changed = q
        changed.scales = q.scales.map { $0 * 2 }
        let doubled = changed.matmul(x, gpu: gpu)
        #expect(maxAbsDifference(doubled, Tensor(shape: want.shape, values: want.array.map { $0 * 2 })) <= 2e-4 * (want.array.map(abs).max() ?? 1))
    }

    /// A matrix whose upload fails stays on the CPU (its product still right), and the next
    /// matrix's product still runs on the device: one failed allocation does not abandon the GPU.
    /// (liblqlora_cuda.so clears the error a handled failure leaves, which CUDA would otherwise
    /// report at the next launch; the emulation keeps that error the same way, see below.)
    @Test func oneFailedUploadKeepsTheRestOnTheDevice() throws {
        let emulated = CUDABackend(api: lq_cuda_emulation().pointee)
        var rng = SeededGenerator(seed: 12)
        let a = try Quantizer.quantize(Tensor.gaussian([64, 128], using: &rng, scale: 0.05), config: .nf4DoubleQuant)
        let b = try Quantizer.quantize(Tensor.gaussian([64, 128], using: &rng, scale: 0.05), config: .nf4DoubleQuant)
        let x = Tensor.gaussian([3, 128], using: &rng, scale: 1)
        lq_cuda_emulation_fail_once(0)  // the next call, a's upload, fails
        let onCPU = a.matmul(x, gpu: emulated)
        #expect(maxAbsDifference(onCPU, a.matmul(x, gpu: nil)) == 0)
        let before = lq_cuda_emulation_calls()
        let onDevice = b.matmul(x, gpu: emulated)
        #expect(lq_cuda_emulation_calls() > before, "b's product did not reach the device")
        #expect(maxAbsDifference(onDevice, b.matmul(x, gpu: nil)) <= 1e-4)
    }

    /// The same on device pointers, where a failure throws instead of falling back: after a's
    /// upload fails, b uploads and multiplies on the device. With the emulation keeping the error
    /// the failed upload leaves (as the library did before it cleared it), b's product fails, so
    /// this test can tell the two apart.
    @Test(arguments: [false, true])
    func aHandledFailureDoesNotFailTheNextLaunch(keepingErrors: Bool) throws {
        let emulated = CUDABackend(api: lq_cuda_emulation().pointee)
        var rng = SeededGenerator(seed: 13)
        let a = try Quantizer.quantize(Tensor.gaussian([64, 128], using: &rng, scale: 0.05), config: .nf4DoubleQuant)
        let b = try Quantizer.quantize(Tensor.gaussian([64, 128], using: &rng, scale: 0.05), config: .nf4DoubleQuant)
        let x = Tensor.gaussian([2, 128], using: &rng, scale: 1)
        let dx = try DeviceFloats(emulated, copying: x), dy = try DeviceFloats(emulated, count: 2 * 64)
        lq_cuda_emulation_keep_errors(keepingErrors ? 1 : 0)
        defer { lq_cuda_emulation_keep_errors(0) }
        lq_cuda_emulation_fail_once(0)  // the next call, a's upload, fails
        #expect(throws: CUDAFailure.self) { try a.deviceMatrix(on: emulated) }
        let m = try b.deviceMatrix(on: emulated)  // an upload is no launch: it works either way
        let product = { try emulated.quantizedProduct(m, rows: 64, cols: 128, x: dx.pointer, n: 2, workspace: nil, y: dy.pointer) }
        if keepingErrors {
            #expect(throws: CUDAFailure.self, "the emulation's pending error did not fail the next launch") { try product() }
            return
        }
        try product()
        let y = Tensor(uninitialized: [2, 64])
        try dy.download(into: y.pointer, count: y.count)
        #expect(maxAbsDifference(y, b.matmul(x, gpu: nil)) <= 1e-4)
    }
}
