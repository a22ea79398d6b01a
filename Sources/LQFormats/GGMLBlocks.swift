import CKernels
import LQTensor

/// ggml's quantized block formats, one row each: geometry, the reference dequantizer and, where
/// lqlora writes the format, the reference quantizer. Ports of `ggml/src/ggml-quants.c` (llama.cpp
/// as vendored by llama-cpp-python 0.3.36): `dequantize_row_*` and `quantize_row_*_ref`, the
/// scalar code llama.cpp uses "for deterministic creation of model files" and that
/// `llama-quantize` runs without an importance matrix. Each line keeps the C expression's order
/// of operations (Swift never fuses a multiply and an add), so the blocks are bit for bit
/// ggml's on every machine (checked against gguf-py and the compiled C by
/// scripts/make-gguf-kquant-fixtures.py).
public enum GGMLBlocks {
    public typealias Dequantize = @Sendable (_ blocks: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>, _ count: Int) -> Void
    public typealias Quantize = @Sendable (_ values: UnsafePointer<Float>, _ blocks: UnsafeMutableRawPointer, _ count: Int) -> Void

    public struct Format: Sendable {
        public let type: GGMLType
        /// Values per block and bytes per block.
        public let values: Int
        public let bytes: Int
        /// `count` blocks to `count · values` floats.
        public let dequantize: Dequantize
        /// `count · values` floats to `count` blocks; nil where lqlora only reads the format.
        public let quantize: Quantize?
    }

    /// The super-block of the K-quants.
    public static let qkK = 256

    public static let formats: [GGMLType: Format] = {
        let rows: [Format] = [
            Format(type: .q4_0, values: 32, bytes: 18, dequantize: dequantizeQ4_0, quantize: quantizeQ4_0),
            Format(type: .q4_1, values: 32, bytes: 20, dequantize: dequantizeQ4_1, quantize: quantizeQ4_1),
            Format(type: .q5_0, values: 32, bytes: 22, dequantize: dequantizeQ5_0, quantize: quantizeQ5_0),
            Format(type: .q5_1, values: 32, bytes: 24, dequantize: dequantizeQ5_1, quantize: quantizeQ5_1),
            Format(type: .q8_0, values: 32, bytes: 34, dequantize: dequantizeQ8_0, quantize: quantizeQ8_0),
            Format(type: .q2_K, values: 256, bytes: 84, dequantize: dequantizeQ2_K, quantize: nil),
            Format(type: .q3_K, values: 256, bytes: 110, dequantize: dequantizeQ3_K, quantize: nil),
            Format(type: .q4_K, values: 256, bytes: 144, dequantize: dequantizeQ4_K, quantize: quantizeQ4_K),
            Format(type: .q5_K, values: 256, bytes: 176, dequantize: dequantizeQ5_K, quantize: quantizeQ5_K),
            Format(type: .q6_K, values: 256, bytes: 210, dequantize: dequantizeQ6_K, quantize: quantizeQ6_K),
            Format(type: .iq4_nl, values: 32, bytes: 18, dequantize: dequantizeIQ4_NL, quantize: nil),
        ]
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.type, $0) })
    }()

    public static func format(_ type: GGMLType) -> Format? { formats[type] }

    /// Bytes of `values` values of `type` (a whole number of blocks).
    public static func byteCount(_ type: GGMLType, values: Int) -> Int {
        let (per, bytes) = type.block
        return values / per * bytes
    }

    /// Quantizes `values` (a whole number of blocks) into `out`, rows in parallel when `rows` > 1
    /// (each row is a whole number of blocks; the bytes do not depend on the thread count).
    public static func quantize(_ type: GGMLType, _ values: UnsafeBufferPointer<Float>, rows: Int, into out: UnsafeMutableRawBufferPointer) {
        let f = formats[type]!
        let quantize = f.quantize!
        let perRow = values.count / rows, blocksPerRow = perRow / f.values
        precondition(perRow % f.values == 0 && out.count == rows * blocksPerRow * f.bytes)
        let src = values.baseAddress!, dst = out.baseAddress!
        let chunk = max(1, 16384 / max(1, perRow))
        Parallel.forTasks((rows + chunk - 1) / chunk) { t in
            let lo = t * chunk, hi = min(rows, lo + chunk)
            quantize(src + lo * perRow, dst + lo * blocksPerRow * f.bytes, (hi - lo) * blocksPerRow)
        }
    }

    // MARK: - helpers as ggml has them

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        lq_f16_to_f32_ref(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
    @inline(__always) static func storeHalf(_ v: Float, _ p: UnsafeMutableRawPointer, _ offset: Int) {
        p.storeBytes(of: lq_f32_to_f16_ref(v).littleEndian, toByteOffset: offset, as: UInt16.self)
    }
    /// C's float → int conversion as x86 does it (cvttss2si): truncation, and INT_MIN where the
    /// value is NaN or out of range (C leaves that undefined; no finite weight reaches it).
    @inline(__always) static func truncate(_ f: Float) -> Int32 {
        f.isFinite && f > -2147483648 && f < 2147483648 ? Int32(f) : Int32.min
    }
    /// `(int8_t)f` and `(uint8_t)f`, then widened as C widens them in MIN().
    @inline(__always) static func int8(_ f: Float) -> Int32 { Int32(Int8(truncatingIfNeeded: truncate(f))) }
    @inline(__always) static func uint8(_ f: Float) -> Int32 { Int32(UInt8(truncatingIfNeeded: truncate(f))) }
    /// ggml's nearest_int: round half to even through the float's mantissa (|f| ≤ 4194303).
    @inline(__always) static func nearestInt(_ f: Float) -> Int32 {
        let v = f + 12582912
        return Int32(bitPattern: v.bitPattern & 0x007f_ffff) - 0x0040_0000
    }
    static let groupMaxEps: Float = 1e-15

    // MARK: - 32-value blocks

    static let dequantizeQ8_0: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 34, d = half(b, 0)
            for j in 0..<32 { y[i * 32 + j] = Float(Int8(bitPattern: b.load(fromByteOffset: 2 + j, as: UInt8.self))) * d }
        }
    }

    static let quantizeQ8_0: Quantize = { x, y, nb in
        for i in 0..<nb {
            let v = x + i * 32, b = y + i * 34
            var amax: Float = 0
            for j in 0..<32 { amax = max(amax, abs(v[j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(d, b, 0)
            for j in 0..<32 {
                let x0 = v[j] * id
                b.storeBytes(of: UInt8(truncatingIfNeeded: truncate(x0.rounded(.toNearestOrAwayFromZero))), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    }

    /// Q4_0 and Q4_1: the low nibbles are the block's first 16 values, the high nibbles its last 16.
    static let dequantizeQ4_0: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 18, d = half(b, 0)
            for j in 0..<16 {
                let q = b.load(fromByteOffset: 2 + j, as: UInt8.self)
                y[i * 32 + j] = Float(Int32(q & 0x0f) - 8) * d
                y[i * 32 + j + 16] = Float(Int32(q >> 4) - 8) * d
            }
        }
    }

    static let quantizeQ4_0: Quantize = { x, y, nb in
        for i in 0..<nb {
            let v = x + i * 32, b = y + i * 18
            let d = signedMax(v, 32) / -8
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(d, b, 0)
            for j in 0..<16 {
                let xi0 = min(15, int8(v[j] * id + 8.5)), xi1 = min(15, int8(v[16 + j] * id + 8.5))
                b.storeBytes(of: UInt8(truncatingIfNeeded: xi0) | UInt8(truncatingIfNeeded: xi1 << 4), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    }

    static let dequantizeQ4_1: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 20, d = half(b, 0), m = half(b, 2)
            for j in 0..<16 {
                let q = b.load(fromByteOffset: 4 + j, as: UInt8.self)
                y[i * 32 + j] = Float(q & 0x0f) * d + m
                y[i * 32 + j + 16] = Float(q >> 4) * d + m
            }
        }
    }

    /// The value of largest magnitude (the first of equals), as ggml's symmetric formats find it.
    @inline(__always) static func signedMax(_ v: UnsafePointer<Float>, _ n: Int) -> Float {
        var amax: Float = 0, mx: Float = 0
        for j in 0..<n where amax < abs(v[j]) {
            amax = abs(v[j])
            mx = v[j]
        }
        return mx
    }

    /// The minimum and maximum of a block as ggml's asymmetric formats find them.
    @inline(__always) static func range(_ v: UnsafePointer<Float>, _ n: Int) -> (min: Float, max: Float) {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for j in 0..<n {
            if v[j] < lo { lo = v[j] }
            if v[j] > hi { hi = v[j] }
        }
        return (lo, hi)
    }

    static let quantizeQ4_1: Quantize = { x, y, nb in
        for i in 0..<nb {
            let v = x + i * 32, b = y + i * 20
            let (lo, hi) = range(v, 32)
            let d = (hi - lo) / 15
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(d, b, 0)
            storeHalf(lo, b, 2)
            for j in 0..<16 {
                let xi0 = min(15, int8((v[j] - lo) * id + 0.5)), xi1 = min(15, int8((v[16 + j] - lo) * id + 0.5))
                b.storeBytes(of: UInt8(truncatingIfNeeded: xi0) | UInt8(truncatingIfNeeded: xi1 << 4), toByteOffset: 4 + j, as: UInt8.self)
            }
        }
    }

    /// Q5_0 and Q5_1: nibbles as Q4_0, the fifth bits in a little-endian u32 (bit j for value j).
    static let dequantizeQ5_0: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 22, d = half(b, 0)
            let qh = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            for j in 0..<16 {
                let q = UInt32(b.load(fromByteOffset: 6 + j, as: UInt8.self))
                let xh0 = ((qh >> UInt32(j)) << 4) & 0x10, xh1 = (qh >> UInt32(j + 12)) & 0x10
                y[i * 32 + j] = Float(Int32((q & 0x0f) | xh0) - 16) * d
                y[i * 32 + j + 16] = Float(Int32((q >> 4) | xh1) - 16) * d
            }
        }
    }

    static let quantizeQ5_0: Quantize = { x, y, nb in
        for i in 0..<nb {
            let v = x + i * 32, b = y + i * 22
            let d = signedMax(v, 32) / -16
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(d, b, 0)
            var qh: UInt32 = 0
            for j in 0..<16 {
                let xi0 = UInt32(UInt8(truncatingIfNeeded: min(31, int8(v[j] * id + 16.5))))
                let xi1 = UInt32(UInt8(truncatingIfNeeded: min(31, int8(v[16 + j] * id + 16.5))))
                b.storeBytes(of: UInt8(truncatingIfNeeded: (xi0 & 0x0f) | ((xi1 & 0x0f) << 4)), toByteOffset: 6 + j, as: UInt8.self)
                qh |= ((xi0 & 0x10) >> 4) << UInt32(j)
                qh |= ((xi1 & 0x10) >> 4) << UInt32(j + 16)
            }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
        }
    }

    static let dequantizeQ5_1: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 24, d = half(b, 0), m = half(b, 2)
            let qh = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            for j in 0..<16 {
                let q = UInt32(b.load(fromByteOffset: 8 + j, as: UInt8.self))
                let xh0 = ((qh >> UInt32(j)) << 4) & 0x10, xh1 = (qh >> UInt32(j + 12)) & 0x10
                y[i * 32 + j] = Float(Int32((q & 0x0f) | xh0)) * d + m
                y[i * 32 + j + 16] = Float(Int32((q >> 4) | xh1)) * d + m
            }
        }
    }

    static let quantizeQ5_1: Quantize = { x, y, nb in
        for i in 0..<nb {
            let v = x + i * 32, b = y + i * 24
            let (lo, hi) = range(v, 32)
            let d = (hi - lo) / 31
            let id: Float = d != 0 ? 1 / d : 0
            storeHalf(d, b, 0)
            storeHalf(lo, b, 2)
            var qh: UInt32 = 0
            for j in 0..<16 {
                let xi0 = UInt32(uint8((v[j] - lo) * id + 0.5)), xi1 = UInt32(uint8((v[16 + j] - lo) * id + 0.5))
                b.storeBytes(of: UInt8(truncatingIfNeeded: (xi0 & 0x0f) | ((xi1 & 0x0f) << 4)), toByteOffset: 8 + j, as: UInt8.self)
                qh |= ((xi0 & 0x10) >> 4) << UInt32(j)
                qh |= ((xi1 & 0x10) >> 4) << UInt32(j + 16)
            }
            b.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
    }

    /// IQ4_NL: Q4_0's layout with a non-linear table of levels.
    static let iq4nlLevels: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    static let dequantizeIQ4_NL: Dequantize = { x, y, nb in
        for i in 0..<nb {
            let b = x + i * 18, d = half(b, 0)
            for j in 0..<16 {
                let q = b.load(fromByteOffset: 2 + j, as: UInt8.self)
                y[i * 32 + j] = d * Float(iq4nlLevels[Int(q & 0x0f)])
                y[i * 32 + j + 16] = d * Float(iq4nlLevels[Int(q >> 4)])
            }
        }
    }
}
