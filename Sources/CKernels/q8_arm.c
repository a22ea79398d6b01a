// NEON int8-activation kernels for arm64 (lq_q8.h), one activation block (32 weights) at a time: its
// codes become its 16 slots of part A and of part B (NF4: the nibbles through TBL; NF2/NF3/NF8 the
// code values in order, then UZP of 4-byte groups), and each row of x takes two 4-lane dot products
// whose sum is the block's four octet sums: SDOT where the CPU has the ARMv8.2 dot product (chosen
// at run time), SMULL + ADDP + SADDLP on baseline ARMv8. Both give each int32 lane the sum of four
// consecutive slots, so they agree bit for bit with each other and with the scalar reference.
#if defined(__aarch64__)
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "q8_impl.h"
#include "quant_impl.h"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

static int has_sdot(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}

/// SDOT when the CPU has it, unless LQLORA_Q8_DOT=baseline (asked once).
static int use_sdot(void) {
    static volatile int known = -1;  // written once; races only store the same value
    if (known >= 0) return known;
    const char *env = getenv("LQLORA_Q8_DOT");
    known = has_sdot() && !(env && strcmp(env, "baseline") == 0);
    return known;
}

const char *lq_q8_dot(void) { return use_sdot() ? "sdot" : "smull"; }

typedef struct {
    const uint8_t *codes;
    const lq_q8_codebook *codebook;
    int8x16_t table;     // ≤ 16 code values
    int8x16x4_t big[4];  // NF8: the 256 values as four 64-entry tables
    int bits;
} decoder;

static decoder make_decoder(const lq_qtensor *t, const lq_q8_codebook *codebook) {
    decoder d;
    memset(&d, 0, sizeof d);
    d.codes = t->codes;
    d.codebook = codebook;
    d.bits = t->format.bits;
    int8_t table[16] = {0};
    for (int c = 0; c < 16 && c < (1 << d.bits); c++) table[c] = codebook->values[c];
    d.table = vld1q_s8(table);
    if (d.bits == 8)
        for (int k = 0; k < 4; k++) d.big[k] = vld1q_s8_x4(codebook->values + 64 * k);
    return d;
}

/// Block j's slots of parts A and B, for weights [i, i + 32) (i a multiple of 32).
static inline void decode32(const decoder *d, int64_t i, int8x16_t *a, int8x16_t *b) {
    if (d->bits == 4) {
        const uint8x16_t v = vld1q_u8(d->codes + i / 2);
        *a = vqtbl1q_s8(d->table, vshrq_n_u8(v, 4));  // high nibbles: the even elements
        *b = vqtbl1q_s8(d->table, vandq_u8(v, vdupq_n_u8(0x0f)));
        return;
    }
    int8x16_t w[2];  // the code values in order
    if (d->bits == 8) {
        for (int h = 0; h < 2; h++) {
            const uint8x16_t idx = vld1q_u8(d->codes + i + 16 * h);
            int8x16_t v = vqtbl4q_s8(d->big[0], idx);  // TBX keeps the lanes whose index is out of its 64
            v = vqtbx4q_s8(v, d->big[1], vsubq_u8(idx, vdupq_n_u8(64)));
            v = vqtbx4q_s8(v, d->big[2], vsubq_u8(idx, vdupq_n_u8(128)));
            w[h] = vqtbx4q_s8(v, d->big[3], vsubq_u8(idx, vdupq_n_u8(192)));
        }
    } else {
        w[0] = vqtbl1q_s8(d->table, lq_neon_indices16(d->codes, d->bits, i / 16));
        w[1] = vqtbl1q_s8(d->table, lq_neon_indices16(d->codes, d->bits, i / 16 + 1));
    }
    // Part A: the first four of each eight values (4-byte groups 0, 2, 4, 6); part B the others.
    const uint32x4_t w0 = vreinterpretq_u32_s8(w[0]), w1 = vreinterpretq_u32_s8(w[1]);
    *a = vreinterpretq_s8_u32(vuzp1q_u32(w0, w1));
    *b = vreinterpretq_s8_u32(vuzp2q_u32(w0, w1));
}

/// Lane n = Σ of slots 4n .. 4n + 3 of w · x, on baseline ARMv8: the products widened to 16 bits,
/// adjacent pairs added (|pair| ≤ 2 · 127², in range), then adjacent pairs of those widened.
static inline int32x4_t dot4_smull(int8x16_t w, int8x16_t x) {
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x)), hi = vmull_high_s8(w, x);
    return vpaddlq_s16(vpaddq_s16(lo, hi));
}

#define LQ_SDOT __attribute__((target("arch=armv8.2-a+dotprod")))
LQ_SDOT static inline int32x4_t dot4_sdot(int8x16_t w, int8x16_t x) { return vdotq_s32(vdupq_n_s32(0), w, x); }

static inline float lane_total(float32x4_t lo, float32x4_t hi) {
    const float32x4_t t = vaddq_f32(lo, hi);  // a0 + a4, a1 + a5, a2 + a6, a3 + a7
    const float32x2_t u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
    return vget_lane_f32(u, 0) + vget_lane_f32(u, 1);  // lq_q8_lane_total
}

/// Rows [r0, r1) of W against rows [i0, i0 + R) of x (R ≤ 4), with DOT as the 4-lane dot product;
/// written once and instantiated for each dot product (SDOT needs its own target).
#define Q8_GEMV_PASS(NAME, ATTR, DOT)                                                                                     \
    ATTR static void NAME(const lq_qtensor *t, const decoder *dec, int mode, int64_t cols, int64_t r0, int64_t r1,        \
                          const lq_q8_rows *x, int64_t i0, int R, float *scales, float *y, int64_t ldy) {                 \
        const int64_t bs = t->format.block_size, nb = cols / LQ_Q8_BLOCK, stride = lq_q8_row_bytes(cols);                 \
        const int8_t *xq = x->q + i0 * stride;                                                                            \
        const float *xd = x->d + i0 * nb;                                                                                 \
        const int8_t *xq2 = x->q2 ? x->q2 + i0 * stride : NULL; /* the outliers' residual, if any */                       \
        const float *xd2 = x->q2 ? x->d2 + i0 * nb : NULL;                                                                \
        lq_q8_row_walk walk = lq_q8_row_walk_start(r0 * cols, cols, bs);                                                       \
        for (int64_t r = r0; r < r1; r++) {                                                                               \
            const int64_t row = r * cols;                                                                                 \
            int64_t pos, bi = 0; /* where the walk stands in the weight block scales[bi] */                               \
            lq_q8_row_scales(t, cols, &walk, &pos, scales, lq_block_scales_neon);                                         \
            float32x4_t acc[2][LQ_Q8_PASS_ROWS], acc2[2][LQ_Q8_PASS_ROWS]; /* x's terms; the residual's */                \
            int flagged[LQ_Q8_PASS_ROWS] = {0};                                                                           \
            for (int i = 0; i < R; i++) acc[0][i] = acc[1][i] = acc2[0][i] = acc2[1][i] = vdupq_n_f32(0);                 \
            for (int64_t j = 0; j < nb; j++) {                                                                            \
                int8x16_t wa, wb;                                                                                         \
                decode32(dec, row + LQ_Q8_BLOCK * j, &wa, &wb);                                                           \
                float32x4_t sw; /* the weight scale of the block's octets */                                              \
                if (mode == LQ_Q8_SCALE_PER16) {                                                                          \
                    const float s[4] = {scales[2 * j], scales[2 * j], scales[2 * j + 1], scales[2 * j + 1]};              \
                    sw = vld1q_f32(s);                                                                                    \
                } else {                                                                                                  \
                    sw = vdupq_n_f32(scales[bi]);                                                                         \
                    pos += 32;                                                                                            \
                    if (pos == bs) pos = 0, bi++;                                                                         \
                }                                                                                                         \
                const int half = (int)(j % 2);                                                                            \
                for (int i = 0; i < R; i++) {                                                                             \
                    const int8_t *q = xq + i * stride + 64 * (j / 2) + 16 * half;                                         \
                    const int32x4_t sums = vaddq_s32(DOT(wa, vld1q_s8(q)), DOT(wb, vld1q_s8(q + 32)));                   \
                    acc[half][i] = vfmaq_f32(acc[half][i], vcvtq_f32_s32(sums), vmulq_n_f32(sw, xd[i * nb + j]));        \
                    if (xd2 && xd2[i * nb + j] != 0.0f) { /* a flagged block: its residual's terms */                     \
                        const int8_t *q2 = xq2 + i * stride + 64 * (j / 2) + 16 * half;                                   \
                        const int32x4_t sums2 = vaddq_s32(DOT(wa, vld1q_s8(q2)), DOT(wb, vld1q_s8(q2 + 32)));            \
                        acc2[half][i] = vfmaq_f32(acc2[half][i], vcvtq_f32_s32(sums2), vmulq_n_f32(sw, xd2[i * nb + j])); \
                        flagged[i] = 1;                                                                                   \
                    }                                                                                                     \
                }                                                                                                         \
            }                                                                                                             \
            for (int i = 0; i < R; i++) {                                                                                 \
                float total = lane_total(acc[0][i], acc[1][i]);                                                           \
                if (flagged[i]) total = total + lane_total(acc2[0][i], acc2[1][i]);                                       \
                y[(i0 + i) * ldy + r] = total * dec->codebook->scale;                                                     \
            }                                                                                                             \
        }                                                                                                                 \
    }

Q8_GEMV_PASS(gemv_pass_smull, , dot4_smull)
Q8_GEMV_PASS(gemv_pass_sdot, LQ_SDOT, dot4_sdot)

void lq_q8_gemv_neon(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                     int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy) {
    int mode = lq_q8_scale_mode(t, cols);
    if (mode == 0) {
        lq_q8_gemv_scalar(t, codebook, cols, row_begin, row_end, x, y, ldy);
        return;
    }
    if (mode == LQ_Q8_SCALE_PER64) mode = LQ_Q8_SCALE_PER32;  // a block at a time: the same walk
    const decoder dec = make_decoder(t, codebook);
    const int sdot = use_sdot();
    lq_q8_scale_buffer buffer;
    float *scales = lq_q8_scales_for(&buffer, cols, t->format.block_size);
    for (int64_t i0 = 0; i0 < x->count; i0 += LQ_Q8_PASS_ROWS) {
        const int R = x->count - i0 < LQ_Q8_PASS_ROWS ? (int)(x->count - i0) : LQ_Q8_PASS_ROWS;
        if (sdot) gemv_pass_sdot(t, &dec, mode, cols, row_begin, row_end, x, i0, R, scales, y, ldy);
        else gemv_pass_smull(t, &dec, mode, cols, row_begin, row_end, x, i0, R, scales, y, ldy);
    }
    lq_q8_scales_free(&buffer);
}

void lq_q8_quantize_neon(int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    const int64_t full = cols / LQ_Q8_BLOCK, nb = lq_q8_blocks(cols);
    if (nb % 2) memset(q + 64 * (nb / 2), 0, 64);  // the missing block of the last pair
    for (int64_t j = 0; j < full; j++) {
        const float *xb = x + LQ_Q8_BLOCK * j;
        int8_t *part = q + 64 * (j / 2) + 16 * (j % 2);  // this block's 16 slots of part A; B is 32 on
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(xb + 4 * k);
            m = vmaxq_f32(m, vabsq_f32(v[k]));
        }
        const float dj = vmaxvq_f32(m) / 127.0f;
        d[j] = dj;
        if (dj == 0.0f) {
            memset(part, 0, 16);
            memset(part + 32, 0, 16);
            continue;
        }
        int16x8_t n16[4];
        for (int k = 0; k < 4; k++) {
            int32x4_t n32[2];
            for (int h = 0; h < 2; h++) {
                float32x4_t s = vdivq_f32(v[2 * k + h], vdupq_n_f32(dj));
                s = vreinterpretq_f32_u32(vandq_u32(vceqq_f32(s, s), vreinterpretq_u32_f32(s)));  // NaN → 0
                s = vminq_f32(vmaxq_f32(s, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
                n32[h] = vcvtq_s32_f32(vrndnq_f32(s));
            }
            n16[k] = vcombine_s16(vmovn_s32(n32[0]), vmovn_s32(n32[1]));
        }
        const int8x16_t a = vcombine_s8(vmovn_s16(n16[0]), vmovn_s16(n16[1]));  // elements 0-15
        const int8x16_t b = vcombine_s8(vmovn_s16(n16[2]), vmovn_s16(n16[3]));  // 16-31
        if (bits == 4) {  // the even elements, then the odd ones
            vst1q_s8(part, vuzp1q_s8(a, b));
            vst1q_s8(part + 32, vuzp2q_s8(a, b));
        } else {  // 4-byte groups 0, 2, 4, 6, then 1, 3, 5, 7
            const uint32x4_t a32 = vreinterpretq_u32_s8(a), b32 = vreinterpretq_u32_s8(b);
            vst1q_s8(part, vreinterpretq_s8_u32(vuzp1q_u32(a32, b32)));
            vst1q_s8(part + 32, vreinterpretq_s8_u32(vuzp2q_u32(a32, b32)));
        }
    }
    lq_q8_quantize_tail(bits, x, cols, q, d);
}
#endif
