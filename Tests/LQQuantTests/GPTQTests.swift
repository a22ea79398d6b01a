import Foundation
import LQFormats
import LQQuant
import LQTensor
import LQTestSupport
import Testing

/// GPTQ and RTN against AutoGPTQ's algorithm run in torch on the same weights and Hessians
/// (scripts/make-gptq-fixtures.py): 2/3/4/8 bits, per row and groups of 64/128, symmetric and
/// asymmetric, with and without act-order, on a 256-column layer (two full blocks) and a
/// 192-column one (a partial block and a partial group); and static groups (AutoGPTQ's
/// static_groups) with groups of 64/128, in order and with act-order, at every width.
struct GPTQTests {
    static let file = try! SafeTensorsFile(path: fixtureDirectory + "/gptq/layers.safetensors")

    static var cases: [String] {
        var out: [String] = []
        for layer in ["a", "b"] { for bits in [2, 3, 4, 8] { for g in [-1, 64, 128] { for sym in ["sym", "asym"] { for act in ["order", "act"] {
            out.append("\(layer).b\(bits).g\(g).\(sym).\(act)")
            if g != -1 { out.append("\(layer).b\(bits).g\(g).\(sym).\(act).static") }
        } } } } }
        return out + ["a.b4.g-1.sym.act.static", "b.b4.g-1.sym.act.static"]
    }

    static func options(_ key: String) -> GPTQ.Options {
        let parts = key.split(separator: ".")
        let group = Int(parts[2].dropFirst())!
        return GPTQ.Options(bits: Int(parts[1].dropFirst())!, groupSize: group == -1 ? nil : group, symmetric: parts[3] == "sym",
                            actOrder: parts[4] == "act", damp: 0.1, staticGroups: parts.count > 5 && parts[5] == "static")
    }

    /// The fp32 arithmetic is AutoGPTQ's operation for operation except inside BLAS/LAPACK (the
    /// Cholesky factors and the lazy batch update sum in another order), so a code may land on the
    /// other side of a rounding boundary; each such flip also moves the errors spread after it.
    @Test(arguments: cases)
    func codesScalesAndZerosMatchAutoGPTQ(key: String) throws {
        let f = Self.file
        let layer = String(key.prefix(1))
        let w = try f.floatTensor(layer + ".weight"), h = try f.floatTensor(layer + ".hessian")
        let result = try GPTQ.quantize(w, hessian: h, options: Self.options(key), name: key)
        let q = result.quantization
        let codes = try f.floatTensor(key + ".codes"), scales = try f.floatTensor(key + ".scale"), zeros = try f.floatTensor(key + ".zero")
        let gIdx = try f.floatTensor(key + ".g_idx")
        #expect(q.groupIndex.map(Float.init) == gIdx.array, "\(key): g_idx")
        #expect(q.scales.count == scales.count && q.zeros.count == zeros.count, "\(key): \(q.scales.count) scales, expected \(scales.count)")
        var flips = 0, worstFlip: Float = 0
        for i in 0..<codes.count where Float(q.codes[i]) != codes.pointer[i] {
            flips += 1
            worstFlip = max(worstFlip, abs(Float(q.codes[i]) - codes.pointer[i]))
        }
        var scaleError: Float = 0, zeroFlips = 0
        for i in 0..<min(scales.count, q.scales.count) {
            scaleError = max(scaleError, abs(q.scales[i] - scales.pointer[i]) / abs(scales.pointer[i]))
            if q.zeros[i] != zeros.pointer[i] { zeroFlips += 1 }
        }
        // A flip moves a code by one level, and flips are rare: at most 1 % of codes.
        #expect(worstFlip <= 1 && flips * 100 <= codes.count, "\(key): \(flips) of \(codes.count) codes differ (by up to \(worstFlip))")
        #expect(scaleError <= 1e-4 && zeroFlips * 100 <= max(zeros.count, 100), "\(key): scales within \(scaleError), \(zeroFlips) zeros differ")
        let loss = Double(try f.floatTensor(key + ".loss").array[0])
        #expect(abs(result.loss - loss) <= 2e-3 * loss, "\(key): loss \(result.loss) vs \(loss)")
        #expect(result.damp == 0.1)
    }

    @Test(arguments: ["a", "b"])
    func roundToNearestMatchesAutoGPTQsQuantizerExactly(layer: String) throws {
        let f = Self.file
        let w = try f.floatTensor(layer + ".weight")
        for bits in [2, 3, 4, 8] { for g in [-1, 64, 128] { for sym in [true, false] {
            let key = "\(layer).rtn.b\(bits).g\(g).\(sym ? "sym" : "asym")"
            let q = UniformQuantization.roundToNearest(w.pointer, rows: w.shape[0], cols: w.shape[1],
                                                        quantizer: UniformQuantizer(bits: bits, symmetric: sym), groupSize: g == -1 ? nil : g)
            #expect(q.codes.map(Float.init) == (try f.floatTensor(key + ".codes")).array, "\(key): codes")
            #expect(q.scales == (try f.floatTensor(key + ".scale")).array, "\(key): scales")
            #expect(q.zeros == (try f.floatTensor(key + ".zero")).array, "\(key): zeros")
        } } }
    }
}

/// The uniform-integer products: the fused GEMV (decoding) and the panel path against the
/// dequantized weight times x in double precision, with sequential and act-order groups.
struct UniformProductTests {
    @Test(arguments: ["a.b4.g128.sym.order", "a.b3.g64.asym.act", "b.b8.g128.sym.order", "b.b2.g-1.asym.order"])
    func productsMatchTheDequantizedWeight(key: String) throws {
        let f = GPTQTests.file, layer = String(key.prefix(1))
        let q = try GPTQ.quantize(try f.floatTensor(layer + ".weight"), hessian: try f.floatTensor(layer + ".hessian"),
                                  options: GPTQTests.options(key)).quantization
        let w = q.dequantized()
        var rng = SeededGenerator(seed: 3)
        for n in [1, 3, 8, 9, 40] {
            let x = Tensor.gaussian([n, q.cols], using: &rng)
            let y = q.matmul(x)
            for i in 0..<n {
                for r in 0..<q.rows {
                    var exact = 0.0, magnitude = 0.0
                    for c in 0..<q.cols {
                        let p = Double(w[r, c]) * Double(x[i, c])
                        exact += p
                        magnitude += abs(p)
                    }
                    #expect(abs(Double(y[i, r]) - exact) <= 1e-5 * magnitude, "\(key) n \(n) row \(r)")
                }
            }
            let dy = Tensor.gaussian([n, q.rows], using: &rng), dx = Tensor(zeros: [n, q.cols])
            q.accumulateTransposedProduct(dy, into: dx)
            #expect(maxAbsDifference(dx, matmul(dy, w)) <= 1e-4, "\(key) n \(n): dY·W")
        }
    }
}
