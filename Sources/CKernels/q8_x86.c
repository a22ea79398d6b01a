// AVX2 int8-activation kernels (lq_q8.h), a pair of activation blocks (64 weights) at a time. The
// codes become two registers of 32 int8 code values in slot order (NF4: one vpshufb per nibble
// plane; NF2/NF3: vpshufb of the bytes into 16-bit lanes, a variable right shift by vpmulhuw, a pack
// and vpshufb; NF8: a table lookup), and each row of x turns them into eight int32 octet sums: with
// AVX-VNNI (chosen at run time) two vpdpbusd of the code values + 128 as unsigned bytes, less 128 · Σq
// per octet; otherwise vpsignb/vpmaddubsw/vpmaddwd of each register, added. Then one fma by the
// lanes' weight scale times their block's activation scale. Specialised by bits, scale walk, rows of
// x and dot product, so the loop has no branch.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "q8_impl.h"
#include "quant_impl.h"

#include <cpuid.h>

#define LQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/// AVX-VNNI (CPUID leaf 7, subleaf 1, EAX bit 4), unless LQLORA_Q8_DOT=baseline. Asked once: CPUID
/// leaves a virtual machine, which costs microseconds.
static int use_vnni(void) {
    static volatile int known = -1;  // written once; races only store the same value
    if (known >= 0) return known;
    unsigned a, b, c, d;
    const char *env = getenv("LQLORA_Q8_DOT");
    known = lq_best_level() == LQ_LEVEL_AVX2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) &&
            !(env && strcmp(env, "baseline") == 0);
    return known;
}

const char *lq_q8_dot(void) { return use_vnni() ? "vpdpbusd" : lq_best_level() == LQ_LEVEL_AVX2 ? "vpmaddubsw" : "none"; }

/// acc + Σ of each 4 bytes of u (unsigned) · s (signed), as AVX-VNNI's vpdpbusd (through the
/// assembler: the instruction needs no compiler target, only the CPU check above).
LQ_AVX2 static inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u), "x"(s));
    return acc;
}

typedef struct {
    const uint8_t *codes;
    size_t code_bytes;
    const lq_q8_codebook *codebook;
    __m256i table, table_u;      // ≤ 16 code values in both halves; the same + 128 (vpdpbusd's unsigned bytes)
    __m256i spread[4], mult[4];  // NF2/NF3: bytes into 16-bit lanes, and their shifts as multipliers
    __m256i code_mask;
    uint8_t element[64];         // NF8: the element of each slot
} decoder;

/// Slot (0..63) that 16-bit lane m of pack register k (0..3) becomes: part A is
/// _mm256_packus_epi16(register 0, register 1), part B the same of 2 and 3, and a pack takes its
/// first register's lanes 0-7, the second's 0-7, the first's 8-15, the second's 8-15.
static int packed_slot(int k, int m) { return 32 * (k / 2) + (m < 8 ? 8 * (k % 2) + m : 16 + 8 * (k % 2) + (m - 8)); }

LQ_AVX2 static decoder make_decoder(const lq_qtensor *t, const lq_q8_codebook *codebook) {
    decoder d;
    memset(&d, 0, sizeof d);
    const int bits = t->format.bits;
    d.codes = t->codes;
    d.code_bytes = lq_packed_bytes(bits, t->numel);
    d.codebook = codebook;
    int8_t table[32] = {0};
    uint8_t table_u[32] = {0};
    for (int c = 0; c < 16 && c < (1 << bits); c++) {
        table[c] = table[c + 16] = codebook->values[c];
        table_u[c] = table_u[c + 16] = (uint8_t)(codebook->values[c] + 128);
    }
    d.table = _mm256_loadu_si256((const __m256i *)table);
    d.table_u = _mm256_loadu_si256((const __m256i *)table_u);
    if (bits == 8)
        for (int s = 0; s < 64; s++) d.element[s] = (uint8_t)lq_q8_element(bits, s);
    if (bits == 2 || bits == 3) {
        // Each lane holds the code's source byte(s) as a big-endian 16-bit window w and the code is
        // (w >> shift) & mask; vpmulhuw by 2^(16 − shift) shifts, so every shift is 1..15. The low
        // half of a register reads block 2p's bytes, the high half block 2p + 1's.
        for (int k = 0; k < 4; k++) {
            uint8_t spread[32];
            uint16_t mult[16];
            for (int m = 0; m < 16; m++) {
                const int element = lq_q8_element(bits, packed_slot(k, m)), b = element / 32, e = element % 32;
                int hi, lo, shift;  // source bytes (−1: none) and the shift within the window
                if (bits == 2) {
                    hi = 8 * b + e / 4, lo = -1, shift = 8 + 6 - 2 * (e % 4);  // the pair's 16 bytes in both halves
                } else {
                    const int g = e / 8, j = e % 8, p = 21 - 3 * j;  // each half holds its block's 12 bytes
                    if (j <= 4) hi = 3 * g, lo = 3 * g + 1, shift = p - 8;
                    else if (j <= 6) hi = 3 * g + 1, lo = 3 * g + 2, shift = p;
                    else hi = 3 * g + 2, lo = -1, shift = 8 + p;
                }
                spread[2 * m] = lo < 0 ? 0x80 : (uint8_t)lo;
                spread[2 * m + 1] = (uint8_t)hi;
                mult[m] = (uint16_t)(1u << (16 - shift));
            }
            d.spread[k] = _mm256_loadu_si256((const __m256i *)spread);
            d.mult[k] = _mm256_loadu_si256((const __m256i *)mult);
        }
        d.code_mask = _mm256_set1_epi16((short)((1 << bits) - 1));
    }
    return d;
}

/// Bytes of codes of one pair (64 weights).
static inline int pair_bytes(int bits) { return 8 * bits; }

/// Parts A and B of the pair of weights whose codes start at p (readable: pair_bytes(bits), and
/// 4 more for NF3): the code values, or with `unsigned_values` the code values + 128.
LQ_AVX2 static inline __attribute__((always_inline)) void decode_pair(const decoder *d, const int bits, const int unsigned_values,
                                                                       const uint8_t *p, __m256i *wa, __m256i *wb) {
    const __m256i table = unsigned_values ? d->table_u : d->table;
    if (bits == 4) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)p), low4 = _mm256_set1_epi8(0x0f);
        *wa = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));  // high nibbles: even elements
        *wb = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low4));
        return;
    }
    if (bits == 8) {
        int8_t v[64];
        for (int s = 0; s < 64; s++) v[s] = d->codebook->values[p[d->element[s]]];
        *wa = _mm256_loadu_si256((const __m256i *)v);
        *wb = _mm256_loadu_si256((const __m256i *)(v + 32));
        if (unsigned_values) {
            *wa = _mm256_xor_si256(*wa, _mm256_set1_epi8(-128));
            *wb = _mm256_xor_si256(*wb, _mm256_set1_epi8(-128));
        }
        return;
    }
    const __m256i src = bits == 2 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p))
                                  : _mm256_loadu2_m128i((const __m128i *)(p + 12), (const __m128i *)p);
    __m256i c[4];
    for (int k = 0; k < 4; k++)
        c[k] = _mm256_and_si256(_mm256_mulhi_epu16(_mm256_shuffle_epi8(src, d->spread[k]), d->mult[k]), d->code_mask);
    *wa = _mm256_shuffle_epi8(table, _mm256_packus_epi16(c[0], c[1]));
    *wb = _mm256_shuffle_epi8(table, _mm256_packus_epi16(c[2], c[3]));
}

/// 128 · Σ q over each octet of every pair of x's rows, laid out as lq_q8_lane_scales: what
/// vpdpbusd's + 128 on the code values adds to the octet sums (the octet sums are the dot product
/// with code values of 1).
LQ_AVX2 static int32_t *octet_bias(const lq_q8_rows *x, const int8_t *xq, int64_t cols) {
    const int64_t pairs = (lq_q8_blocks(cols) + 1) / 2, stride = lq_q8_row_bytes(cols);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(x->count * pairs * 8 + 1));
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < x->count; i++)
        for (int64_t p = 0; p < pairs; p++) {
            const int8_t *q = xq + i * stride + 64 * p;
            const __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)q)), ones16);
            const __m256i b = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(q + 32))), ones16);
            _mm256_storeu_si256((__m256i *)(out + (i * pairs + p) * 8), _mm256_slli_epi32(_mm256_add_epi32(a, b), 7));
        }
    return out;
}

LQ_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);  // ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)): lq_q8_lane_total
}

/// What the passes read of x besides its bytes: lq_q8_lane_scales and (vnni) octet_bias of all of
/// x's rows, and with a residual (flags ≠ NULL) the same of q2/d2, lq_q8_pair_flags and whether
/// each row has a flagged block.
typedef struct {
    const float *lanes, *lanes2;
    const int32_t *bias, *bias2;
    const uint8_t *flags, *row_flags;
} q8_acts;

/// The eight octet sums Σ C · q of one pair against one row's pair of int8 activations q: aa, ab
/// the pair's parts as the dot product takes them (vnni: code values + 128; else |code values|),
/// wa, wb the signed ones (the sign vpmaddubsw moves onto q), bias the pair's 128 · Σ q (vnni).
LQ_AVX2 static inline __attribute__((always_inline)) __m256i pair_sums(const int vnni, __m256i aa, __m256i ab, __m256i wa,
                                                                        __m256i wb, const int8_t *q, const int32_t *bias) {
    const __m256i qa = _mm256_loadu_si256((const __m256i *)q), qb = _mm256_loadu_si256((const __m256i *)(q + 32));
    if (vnni) {
        const __m256i sums = dpbusd(dpbusd(_mm256_setzero_si256(), aa, qa), ab, qb);
        return _mm256_sub_epi32(sums, _mm256_loadu_si256((const __m256i *)bias));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i pa = _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(qa, wa)), ones);
    const __m256i pb = _mm256_madd_epi16(_mm256_maddubs_epi16(ab, _mm256_sign_epi8(qb, wb)), ones);
    return _mm256_add_epi32(pa, pb);
}

/// Rows [r0, r1) of W against rows [i0, i0 + R) of x, with bits, the scale walk (mode), R and the
/// dot product constant once inlined.
LQ_AVX2 static inline __attribute__((always_inline)) void rows_pass(const lq_qtensor *t, const decoder *dec, const int bits,
                                                                     const int mode, const int R, const int vnni, int64_t cols,
                                                                     int64_t r0, int64_t r1, const lq_q8_rows *x, int64_t i0,
                                                                     const q8_acts *acts, float *scales, float *y, int64_t ldy) {
    const int64_t bs = t->format.block_size, nb = cols / LQ_Q8_BLOCK, pairs = (nb + 1) / 2, full = nb / 2;
    const int64_t stride = lq_q8_row_bytes(cols), step = mode == LQ_Q8_SCALE_PER64 ? 64 : 32;
    const __m256i dup2 = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const int8_t *xq = x->q + i0 * stride;
    const float *xl = acts->lanes + i0 * pairs * 8;
    const int32_t *xb = vnni ? acts->bias + i0 * pairs * 8 : NULL;
    // The residual: its bytes, lane scales, bias and which pairs have a flagged block.
    const uint8_t *xf = acts->flags ? acts->flags + i0 * pairs : NULL, *xr = acts->flags ? acts->row_flags + i0 : NULL;
    const int8_t *xq2 = xf ? x->q2 + i0 * stride : NULL;
    const float *xl2 = xf ? acts->lanes2 + i0 * pairs * 8 : NULL;
    const int32_t *xb2 = xf && vnni ? acts->bias2 + i0 * pairs * 8 : NULL;
    lq_q8_row_walk walk = lq_q8_row_walk_start(r0 * cols, cols, bs);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t row = r * cols;
        int64_t pos, bi = 0;  // where the walk stands in the weight block scales[bi]
        lq_q8_row_scales(t, cols, &walk, &pos, scales, lq_block_scales_avx2);
        __m256 acc[LQ_Q8_PASS_ROWS], acc2[LQ_Q8_PASS_ROWS];  // x's terms; the residual's
        for (int i = 0; i < R; i++) acc[i] = acc2[i] = _mm256_setzero_ps();
        for (int64_t p = 0; p < pairs; p++) {
            const int64_t w0 = row + 64 * p;  // the pair's first weight
            const uint8_t *codes = dec->codes + w0 * bits / 8;
            uint8_t padded[64];
            const int lone = p == full;  // a last block without its pair: zeros after it
            if (lone || (bits == 3 && (size_t)(codes - dec->codes) + 28 > dec->code_bytes)) {
                memset(padded, 0, sizeof padded);
                memcpy(padded, codes, (size_t)(lone ? pair_bytes(bits) / 2 : pair_bytes(bits)));
                codes = padded;
            }
            __m256i wa, wb;
            decode_pair(dec, bits, vnni, codes, &wa, &wb);
            __m256 sw;
            if (mode == LQ_Q8_SCALE_PER16) {  // blocks of 16: four per pair, two lanes each
                sw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(scales + 4 * p)), dup2);
            } else {
                const float s0 = scales[bi];
                pos += step;
                if (pos == bs) pos = 0, bi++;
                if (mode == LQ_Q8_SCALE_PER64) {
                    sw = _mm256_set1_ps(s0);
                } else {
                    const float s1 = lone ? s0 : scales[bi];  // a lone block's lanes 4-7 multiply zeros
                    pos += step;
                    if (pos == bs) pos = 0, bi++;
                    sw = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(s0)), _mm_set1_ps(s1), 1);
                }
            }
            const __m256i aa = vnni ? wa : _mm256_sign_epi8(wa, wa), ab = vnni ? wb : _mm256_sign_epi8(wb, wb);
            for (int i = 0; i < R; i++) {
                const int64_t at = (i * pairs + p) * 8;
                const __m256i sums = pair_sums(vnni, aa, ab, wa, wb, xq + i * stride + 64 * p, vnni ? xb + at : NULL);
                // s_b · d_j per lane, as the scalar reference multiplies them.
                const __m256 sd = _mm256_mul_ps(sw, _mm256_loadu_ps(xl + at));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), sd, acc[i]);
                if (xf && xf[i * pairs + p]) {  // a pair with a flagged block: the residual, in its own lanes
                    // (the pair's unflagged block, if any, has d2 = 0 and q2 = 0: it adds 0)
                    const __m256i sums2 = pair_sums(vnni, aa, ab, wa, wb, xq2 + i * stride + 64 * p, vnni ? xb2 + at : NULL);
                    acc2[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums2), _mm256_mul_ps(sw, _mm256_loadu_ps(xl2 + at)), acc2[i]);
                }
            }
        }
        for (int i = 0; i < R; i++) {
            float total = hsum(acc[i]);
            if (xr && xr[i]) total = total + hsum(acc2[i]);
            y[(i0 + i) * ldy + r] = total * dec->codebook->scale;
        }
    }
}

#define Q8_PASS(B, M, RR) \
    (vnni ? rows_pass(t, dec, B, M, RR, 1, cols, r0, r1, x, i0, acts, scales, y, ldy) \
          : rows_pass(t, dec, B, M, RR, 0, cols, r0, r1, x, i0, acts, scales, y, ldy))
#define Q8_BY_ROWS(B, M) do { if (R == 4) Q8_PASS(B, M, 4); else if (R == 2) Q8_PASS(B, M, 2); else Q8_PASS(B, M, 1); } while (0)
#define Q8_BY_MODE(B)                                                         \
    do {                                                                      \
        if (mode == LQ_Q8_SCALE_PER64) Q8_BY_ROWS(B, LQ_Q8_SCALE_PER64);      \
        else if (mode == LQ_Q8_SCALE_PER32) Q8_BY_ROWS(B, LQ_Q8_SCALE_PER32); \
        else Q8_BY_ROWS(B, LQ_Q8_SCALE_PER16);                                \
    } while (0)

LQ_AVX2 static void run_pass(const lq_qtensor *t, const decoder *dec, int mode, int R, int vnni, int64_t cols, int64_t r0,
                             int64_t r1, const lq_q8_rows *x, int64_t i0, const q8_acts *acts, float *scales, float *y,
                             int64_t ldy) {
    switch (t->format.bits) {
        case 2: Q8_BY_MODE(2); break;
        case 3: Q8_BY_MODE(3); break;
        case 4: Q8_BY_MODE(4); break;
        default: Q8_BY_MODE(8); break;
    }
}

LQ_AVX2 void lq_q8_gemv_avx2(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                             int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy) {
    const int mode = lq_q8_scale_mode(t, cols);
    if (mode == 0) {
        lq_q8_gemv_scalar(t, codebook, cols, row_begin, row_end, x, y, ldy);
        return;
    }
    const decoder dec = make_decoder(t, codebook);
    lq_q8_scale_buffer buffer;
    float *scales = lq_q8_scales_for(&buffer, cols, t->format.block_size);
    const int vnni = use_vnni();
    float *lanes = lq_q8_lane_scales(x, x->d, cols);
    int32_t *bias = vnni ? octet_bias(x, x->q, cols) : NULL;
    uint8_t *flags = lq_q8_pair_flags(x, cols), *row_flags = NULL;
    float *lanes2 = NULL;
    int32_t *bias2 = NULL;
    if (flags) {
        const int64_t pairs = (lq_q8_blocks(cols) + 1) / 2;
        row_flags = calloc((size_t)x->count + 1, 1);
        for (int64_t i = 0; i < x->count; i++)
            for (int64_t p = 0; p < pairs; p++) row_flags[i] |= flags[i * pairs + p];
        lanes2 = lq_q8_lane_scales(x, x->d2, cols);
        bias2 = vnni ? octet_bias(x, x->q2, cols) : NULL;
    }
    const q8_acts acts = {lanes, lanes2, bias, bias2, flags, row_flags};
    for (int64_t i0 = 0; i0 < x->count;) {
        const int R = x->count - i0 >= 4 ? 4 : x->count - i0 >= 2 ? 2 : 1;
        run_pass(t, &dec, mode, R, vnni, cols, row_begin, row_end, x, i0, &acts, scales, y, ldy);
        i0 += R;
    }
    free(bias2);
    free(lanes2);
    free(flags);
    free(row_flags);
    free(bias);
    free(lanes);
    lq_q8_scales_free(&buffer);
}

LQ_AVX2 void lq_q8_quantize_avx2(int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    const int64_t full = cols / LQ_Q8_BLOCK, nb = lq_q8_blocks(cols);
    if (nb % 2) memset(q + 64 * (nb / 2), 0, 64);  // the missing block of the last pair
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // NF4's parts: within each 16 values the even ones, then the odd; then the halves' evens together.
    const __m256i evens_odds = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                                0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int64_t j = 0; j < full; j++) {
        const float *xb = x + LQ_Q8_BLOCK * j;
        int8_t *part = q + 64 * (j / 2) + 16 * (j % 2);  // this block's 16 slots of part A; B is 32 on
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float dj = _mm_cvtss_f32(m4) / 127.0f;
        d[j] = dj;
        __m256i packed = _mm256_setzero_si256();
        if (dj != 0.0f) {
            const __m256 dv = _mm256_set1_ps(dj);
            __m256i n[4];
            for (int k = 0; k < 4; k++) {
                __m256 s = _mm256_div_ps(v[k], dv);
                s = _mm256_and_ps(s, _mm256_cmp_ps(s, s, _CMP_ORD_Q));  // NaN → 0
                s = _mm256_min_ps(_mm256_max_ps(s, lo), hi);
                n[k] = _mm256_cvtps_epi32(_mm256_round_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            }
            // The packs leave the 4-value groups in the order 0 2 4 6 | 1 3 5 7: parts A | B already.
            packed = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
            if (bits == 4)
                packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(packed, order), evens_odds), 0xD8);
        }
        _mm_storeu_si128((__m128i *)part, _mm256_castsi256_si128(packed));
        _mm_storeu_si128((__m128i *)(part + 32), _mm256_extracti128_si256(packed, 1));
    }
    lq_q8_quantize_tail(bits, x, cols, q, d);
}
#endif
