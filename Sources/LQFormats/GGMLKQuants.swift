/// The K-quants: super-blocks of 256 values with sub-block scales (and minimums) themselves
/// quantized. Ports of ggml-quants.c's `dequantize_row_q{2..6}_K` and `quantize_row_q{4,5,6}_K_ref`
/// with their helpers `make_qkx2_quants`, `make_qx_quants` and `get_scale_min_k4`.
///
/// Layouts (ggml-common.h, little-endian f16 d / dmin):
///   Q2_K 84 B:  scales[16] (low nibble scale, high nibble min), qs[64], d, dmin
///   Q3_K 110 B: hmask[32], qs[64], scales[12] (6-bit, packed), d
///   Q4_K 144 B: d, dmin, scales[12] (8 six-bit scales and mins), qs[128]
///   Q5_K 176 B: d, dmin, scales[12], qh[32], qs[128]
///   Q6_K 210 B: ql[128], qh[64], scales[16] (int8), d
extension GGMLBlocks {
    // MARK: - dequantization

    static let dequantizeQ2_K: Dequantize = { x, out, nb in
        var y = out
        for i in 0..<nb {
            let b = x + i * 84
            let d = half(b, 80), mn = half(b, 82)
            var q = 16, scale = 0
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    for half16 in 0..<2 {
                        let sc = b.load(fromByteOffset: scale, as: UInt8.self)
                        scale += 1
                        let dl = d * Float(sc & 0x0f), ml = mn * Float(sc >> 4)
                        for l in 0..<16 {
                            let v = (b.load(fromByteOffset: q + half16 * 16 + l, as: UInt8.self) >> shift) & 3
                            y.pointee = dl * Float(Int8(v)) - ml
                            y += 1
                        }
                    }
                    shift += 2
                }
                q += 32
            }
        }
    }

    static let dequantizeQ3_K: Dequantize = { x, out, nb in
        var y = out
        let kmask1: UInt32 = 0x0303_0303, kmask2: UInt32 = 0x0f0f_0f0f
        for i in 0..<nb {
            let b = x + i * 110
            let dAll = half(b, 108)
            var aux = (0..<3).map { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 96 + 4 * $0, as: UInt32.self)) } + [0]
            let tmp = aux[2]
            aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
            aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
            aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
            aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
            // The 16 scales are the bytes of aux, as int8.
            let scales = aux.flatMap { w in (0..<4).map { Int32(Int8(truncatingIfNeeded: w >> (8 * UInt32($0)))) } }
            var q = 32, m: UInt8 = 1, s = 0
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    for half16 in 0..<2 {
                        let dl = dAll * Float(scales[s] - 32)
                        s += 1
                        for l in 0..<16 {
                            let k = half16 * 16 + l
                            let low = Int32((b.load(fromByteOffset: q + k, as: UInt8.self) >> shift) & 3)
                            let high: Int32 = b.load(fromByteOffset: k, as: UInt8.self) & m != 0 ? 0 : 4
                            y.pointee = dl * Float(low - high)
                            y += 1
                        }
                    }
                    shift += 2
                    m <<= 1
                }
                q += 32
            }
        }
    }

    /// The j-th 6-bit scale and minimum of a Q4_K / Q5_K super-block.
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
        func at(_ k: Int) -> UInt8 { q.load(fromByteOffset: k, as: UInt8.self) }
        if j < 4 { return (at(j) & 63, at(j + 4) & 63) }
        return ((at(j + 4) & 0x0f) | ((at(j - 4) >> 6) << 4), (at(j + 4) >> 4) | ((at(j) >> 6) << 4))
    }

    static let dequantizeQ4_K: Dequantize = { x, out, nb in
        var y = out
        for i in 0..<nb {
            let b = x + i * 144
            let d = half(b, 0), mn = half(b, 2), scales = b + 4
            var q = 16, s = 0
            for _ in 0..<4 {
                let (sc1, m1) = scaleMinK4(s, scales), (sc2, m2) = scaleMinK4(s + 1, scales)
                let d1 = d * Float(sc1), min1 = mn * Float(m1), d2 = d * Float(sc2), min2 = mn * Float(m2)
                for l in 0..<32 { y[l] = d1 * Float(b.load(fromByteOffset: q + l, as: UInt8.self) & 0x0f) - min1 }
                for l in 0..<32 { y[32 + l] = d2 * Float(b.load(fromByteOffset: q + l, as: UInt8.self) >> 4) - min2 }
                y += 64
                q += 32
                s += 2
            }
        }
    }

    static let dequantizeQ5_K: Dequantize = { x, out, nb in
        var y = out
        for i in 0..<nb {
            let b = x + i * 176
            let d = half(b, 0), mn = half(b, 2), scales = b + 4, qh = 16
            var ql = 48, s = 0
            var u1: UInt8 = 1, u2: UInt8 = 2
            for _ in 0..<4 {
                let (sc1, m1) = scaleMinK4(s, scales), (sc2, m2) = scaleMinK4(s + 1, scales)
                let d1 = d * Float(sc1), min1 = mn * Float(m1), d2 = d * Float(sc2), min2 = mn * Float(m2)
                for l in 0..<32 {
                    let h = b.load(fromByteOffset: qh + l, as: UInt8.self)
                    y[l] = d1 * Float(Int32(b.load(fromByteOffset: ql + l, as: UInt8.self) & 0x0f) + (h & u1 != 0 ? 16 : 0)) - min1
                }
                for l in 0..<32 {
                    let h = b.load(fromByteOffset: qh + l, as: UInt8.self)
                    y[32 + l] = d2 * Float(Int32(b.load(fromByteOffset: ql + l, as: UInt8.self) >> 4) + (h & u2 != 0 ? 16 : 0)) - min2
                }
                y += 64
                ql += 32
                s += 2
                u1 <<= 2
                u2 <<= 2
            }
        }
    }

    static let dequantizeQ6_K: Dequantize = { x, out, nb in
        var y = out
        for i in 0..<nb {
            let b = x + i * 210
            let d = half(b, 208)
            var ql = 0, qh = 128, sc = 192
            for _ in 0..<2 {
                for l in 0..<32 {
                    let s = l / 16
                    func byte(_ k: Int) -> UInt8 { b.load(fromByteOffset: k, as: UInt8.self) }
                    func scale(_ k: Int) -> Float { Float(Int8(bitPattern: byte(sc + k))) }
                    let h = byte(qh + l)
                    let q1 = Int32((byte(ql + l) & 0x0f) | (((h >> 0) & 3) << 4)) - 32
                    let q2 = Int32((byte(ql + l + 32) & 0x0f) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int32((byte(ql + l) >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int32((byte(ql + l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32
                    y[l] = d * scale(s) * Float(q1)
                    y[l + 32] = d * scale(s + 2) * Float(q2)
                    y[l + 64] = d * scale(s + 4) * Float(q3)
                    y[l + 96] = d * scale(s + 6) * Float(q4)
                }
                y += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    }

    // MARK: - quantization

    /// make_qkx2_quants: an asymmetric grid 0…nmax for `n` values, searched over `nstep` + 1
    /// scales around the min-max one by weighted least squares. Fills `L`, returns (scale, −min).
    static func makeQKX2(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                         _ L: UnsafeMutablePointer<UInt8>, _ Laux: UnsafeMutablePointer<UInt8>,
                         rmin: Float, rdelta: Float, nstep: Int) -> (scale: Float, negMin: Float) {
        var mn = x[0], mx = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < mn { mn = x[i] }
            if x[i] > mx { mx = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if mn > 0 { mn = 0 }
        if mx == mn {
            for i in 0..<n { L[i] = 0 }
            return (0, -mn)
        }
        var iscale = Float(nmax) / (mx - mn)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - mn))
            L[i] = UInt8(truncatingIfNeeded: max(0, min(nmax, l)))
            var diff = scale * Float(L[i]) + mn - x[i]
            diff = diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { return (scale, -mn) }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (mx - mn)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - mn))))
                Laux[i] = UInt8(truncatingIfNeeded: l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var curError: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = diff * diff
                    curError += weights[i] * diff
                }
                if curError < bestError {
                    for i in 0..<n { L[i] = Laux[i] }
                    bestError = curError
                    scale = thisScale
                    mn = thisMin
                }
            }
        }
        return (scale, -mn)
    }

    /// make_qx_quants with rmse_type 1 and no importance weights (w = x²): a symmetric grid
    /// −nmax…nmax−1 for `n` values, stored in `L` offset by nmax; returns the scale.
    static func makeQX(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        var mx: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax {
                amax = ax
                mx = x[i]
            }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = Float(-nmax) / mx
        var sumLX: Float = 0, sumL2: Float = 0
        for i in 0..<n {
            let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l + nmax)
            let w = x[i] * x[i], fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / mx
            sumLX = 0
            sumL2 = 0
            for i in 0..<n {
                let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
                let w = x[i] * x[i], fl = Float(l)
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<n { L[i] = Int8(truncatingIfNeeded: nmax + max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))) }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }

    /// Q4_K and Q5_K share everything but the grid (15 or 31 levels), the search and the packing.
    @inline(__always) static func quantizeQxK(_ x: UnsafePointer<Float>, _ b: UnsafeMutableRawPointer, nmax: Int32, rmin: Float, nstep: Int,
                                             L: UnsafeMutablePointer<UInt8>) {
        var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
        var weights = [Float](repeating: 0, count: 32), laux = [UInt8](repeating: 0, count: 32)
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<8 {
            let v = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += v[l] * v[l] }
            let avX = (sumX2 / 32).squareRoot()
            for l in 0..<32 { weights[l] = avX + abs(v[l]) }
            let (scale, negMin) = weights.withUnsafeBufferPointer { w in
                laux.withUnsafeMutableBufferPointer { a in
                    makeQKX2(32, nmax, v, w.baseAddress!, L + 32 * j, a.baseAddress!, rmin: rmin, rdelta: 0.1, nstep: nstep)
                }
            }
            scales[j] = scale
            mins[j] = negMin
            if scale > maxScale { maxScale = scale }
            if negMin > maxMin { maxMin = negMin }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        let sc = b + 4
        func put(_ k: Int, _ v: UInt8) { sc.storeBytes(of: v, toByteOffset: k, as: UInt8.self) }
        func get(_ k: Int) -> UInt8 { sc.load(fromByteOffset: k, as: UInt8.self) }
        for j in 0..<8 {
            let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
            let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
            if j < 4 {
                put(j, ls)
                put(j + 4, lm)
            } else {
                put(j + 4, (ls & 0x0f) | ((lm & 0x0f) << 4))
                put(j - 4, get(j - 4) | ((ls >> 4) << 6))
                put(j, get(j) | ((lm >> 4) << 6))
            }
        }
        storeHalf(maxScale / 63, b, 0)
        storeHalf(maxMin / 63, b, 2)
        let dAll = half(b, 0), dMin = half(b, 2)
        for j in 0..<8 {
            let (s, m) = scaleMinK4(j, sc)
            let d = dAll * Float(s)
            if d == 0 { continue }
            let dm = dMin * Float(m)
            for ii in 0..<32 {
                L[32 * j + ii] = UInt8(truncatingIfNeeded: max(0, min(nmax, nearestInt((x[32 * j + ii] + dm) / d))))
            }
        }
    }

    static let quantizeQ4_K: Quantize = { x, y, nb in
        let L = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        defer { L.deallocate() }
        for i in 0..<nb {
            let b = y + i * 144, v = x + i * 256
            quantizeQxK(v, b, nmax: 15, rmin: -1, nstep: 20, L: L)
            for j in 0..<4 {
                for l in 0..<32 {
                    b.storeBytes(of: L[64 * j + l] | (L[64 * j + l + 32] << 4), toByteOffset: 16 + 32 * j + l, as: UInt8.self)
                }
            }
        }
    }

    static let quantizeQ5_K: Quantize = { x, y, nb in
        let L = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        defer { L.deallocate() }
        for i in 0..<nb {
            let b = y + i * 176, v = x + i * 256
            quantizeQxK(v, b, nmax: 31, rmin: -0.5, nstep: 15, L: L)
            let qh = b + 16, ql = b + 48
            for k in 0..<32 { qh.storeBytes(of: 0, toByteOffset: k, as: UInt8.self) }
            var m1: UInt8 = 1, m2: UInt8 = 2
            for n in 0..<4 {
                for j in 0..<32 {
                    var l1 = L[64 * n + j], l2 = L[64 * n + j + 32]
                    var h = qh.load(fromByteOffset: j, as: UInt8.self)
                    if l1 > 15 {
                        l1 -= 16
                        h |= m1
                    }
                    if l2 > 15 {
                        l2 -= 16
                        h |= m2
                    }
                    qh.storeBytes(of: h, toByteOffset: j, as: UInt8.self)
                    ql.storeBytes(of: l1 | (l2 << 4), toByteOffset: 32 * n + j, as: UInt8.self)
                }
                m1 <<= 2
                m2 <<= 2
            }
        }
    }

    static let quantizeQ6_K: Quantize = { x, y, nb in
        let L = UnsafeMutablePointer<Int8>.allocate(capacity: 256)
        defer { L.deallocate() }
        var scales = [Float](repeating: 0, count: 16)
        for i in 0..<nb {
            let b = y + i * 210, v = x + i * 256
            var maxScale: Float = 0, maxAbsScale: Float = 0
            for ib in 0..<16 {
                let scale = makeQX(16, 32, v + 16 * ib, L + 16 * ib)
                scales[ib] = scale
                if abs(scale) > maxAbsScale {
                    maxAbsScale = abs(scale)
                    maxScale = scale
                }
            }
            if maxAbsScale < groupMaxEps {
                b.initializeMemory(as: UInt8.self, repeating: 0, count: 210)
                storeHalf(0, b, 208)
                continue
            }
            let iscale = -128 / maxScale
            storeHalf(1 / iscale, b, 208)
            for ib in 0..<16 {
                b.storeBytes(of: Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib]))), toByteOffset: 192 + ib, as: Int8.self)
            }
            let dAll = half(b, 208)
            for j in 0..<16 {
                let d = dAll * Float(b.load(fromByteOffset: 192 + j, as: Int8.self))
                if d == 0 { continue }
                for ii in 0..<16 {
                    L[16 * j + ii] = Int8(truncatingIfNeeded: max(-32, min(31, nearestInt(v[16 * j + ii] / d))) + 32)
                }
            }
            for j in 0..<2 {
                for l in 0..<32 {
                    let base = 128 * j + l
                    let q1 = UInt8(bitPattern: L[base]) & 0x0f, q2 = UInt8(bitPattern: L[base + 32]) & 0x0f
                    let q3 = UInt8(bitPattern: L[base + 64]) & 0x0f, q4 = UInt8(bitPattern: L[base + 96]) & 0x0f
                    b.storeBytes(of: q1 | (q3 << 4), toByteOffset: 64 * j + l, as: UInt8.self)
                    b.storeBytes(of: q2 | (q4 << 4), toByteOffset: 64 * j + l + 32, as: UInt8.self)
                    let h = (UInt8(bitPattern: L[base]) >> 4) | ((UInt8(bitPattern: L[base + 32]) >> 4) << 2)
                        | ((UInt8(bitPattern: L[base + 64]) >> 4) << 4) | ((UInt8(bitPattern: L[base + 96]) >> 4) << 6)
                    b.storeBytes(of: h, toByteOffset: 128 + 32 * j + l, as: UInt8.self)
                }
            }
        }
    }
}
