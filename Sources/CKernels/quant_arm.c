// NEON NormalFloat kernels for arm64. Codes become byte indices (nibble split for 4 bits, a
// byte-replicating table lookup and shifts for 2 bits, two shifted 24-bit words for 3 bits), the
// codebook is looked up as four byte planes with TBL, and ZIPs reassemble the floats in order.
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

#include "quant_impl.h"

typedef struct {
    uint8x16_t plane[4];
    int bits;
} neon_decoder;

static inline neon_decoder make_neon_decoder(const lq_qtensor *t) {
    neon_decoder d;
    d.bits = t->format.bits;
    uint8_t bytes[4][16] = {{0}};
    int n = d.bits >= 8 ? 0 : 1 << d.bits;
    for (int c = 0; c < n; c++) {
        uint32_t u;
        memcpy(&u, t->codebook + c, 4);
        for (int p = 0; p < 4; p++) bytes[p][c] = (uint8_t)(u >> (8 * p));
    }
    for (int p = 0; p < 4; p++) d.plane[p] = vld1q_u8(bytes[p]);
    return d;
}

/// The 16 values of codes [16g, 16g + 16) in order, in four vectors.
static inline void decode16(const neon_decoder *d, const lq_qtensor *t, int64_t g, float32x4_t out[4]) {
    if (d->bits == 8) {
        const uint8_t *c = t->codes + 16 * g;
        for (int k = 0; k < 4; k++) {
            float v[4] = {t->codebook[c[4 * k]], t->codebook[c[4 * k + 1]], t->codebook[c[4 * k + 2]], t->codebook[c[4 * k + 3]]};
            out[k] = vld1q_f32(v);
        }
        return;
    }
    uint8x16_t idx = lq_neon_indices16(t->codes, d->bits, g);
    uint8x16_t b0 = vqtbl1q_u8(d->plane[0], idx), b1 = vqtbl1q_u8(d->plane[1], idx);
    uint8x16_t b2 = vqtbl1q_u8(d->plane[2], idx), b3 = vqtbl1q_u8(d->plane[3], idx);
    uint16x8_t w01l = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), w01h = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
    uint16x8_t w23l = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), w23h = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
    out[0] = vreinterpretq_f32_u16(vzip1q_u16(w01l, w23l));
    out[1] = vreinterpretq_f32_u16(vzip2q_u16(w01l, w23l));
    out[2] = vreinterpretq_f32_u16(vzip1q_u16(w01h, w23h));
    out[3] = vreinterpretq_f32_u16(vzip2q_u16(w01h, w23h));
}

enum { SCALE_BATCH = 256 };

/// LQ-LoRA integer block scales four at a time: vdivq_f32 is an IEEE division, so the values equal
/// the scalar reference's.
static int64_t uint_scales_neon(const lq_qtensor *t, int64_t b, int64_t count, float step, float *out) {
    const int bits = t->format.scale_bits;
    const float32x4_t vstep = vdupq_n_f32(step), voffset = vdupq_n_f32(t->scale_offset);
    int64_t k = 0;
    for (; k + 4 <= count; k += 4) {
        uint32_t c[4];
        for (int j = 0; j < 4; j++) c[j] = lq_code_at(t->scale_codes, bits, b + k + j);
        vst1q_f32(out + k, vaddq_f32(vdivq_f32(vcvtq_f32_u32(vld1q_u32(c)), vstep), voffset));
    }
    return k;
}

void lq_block_scales_neon(const lq_qtensor *t, int64_t first, int64_t count, float *out) {
    lq_block_scales_with(t, first, count, out, uint_scales_neon);
}

void lq_dequantize_neon(const lq_qtensor *t, int64_t start, int64_t count, float *out) {
    const int64_t bs = t->format.block_size;
    int64_t i = start, end = start + count;
    // Scalar to the first boundary that is both a block and a 16-value group start.
    int64_t step = bs % 16 == 0 ? bs : 0;
    if (step == 0) { lq_dequantize_scalar(t, start, count, out); return; }
    int64_t head_end = ((i + bs - 1) / bs) * bs;
    if (head_end > end) head_end = end;
    if (head_end > i) { lq_dequantize_scalar(t, i, head_end - i, out); i = head_end; }
    const neon_decoder d = make_neon_decoder(t);
    float scales[SCALE_BATCH];
    while (end - i >= bs) {
        int64_t nb = (end - i) / bs;
        if (nb > SCALE_BATCH) nb = SCALE_BATCH;
        lq_block_scales_neon(t, i / bs, nb, scales);
        for (int64_t k = 0; k < nb; k++, i += bs) {
            for (int64_t j = 0; j < bs; j += 16) {
                float32x4_t v[4];
                decode16(&d, t, (i + j) >> 4, v);
                float *o = out + (i - start) + j;
                for (int q = 0; q < 4; q++) vst1q_f32(o + 4 * q, vmulq_n_f32(v[q], scales[k]));
            }
        }
    }
    if (i < end) lq_dequantize_scalar(t, i, end - i, out + (i - start));
}

void lq_gemv_neon(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    const int64_t bs = t->format.block_size;
    if (cols % bs != 0 || bs % 16 != 0) {
        lq_gemv_scalar(t, cols, row_begin, row_end, x, y);
        return;
    }
    const neon_decoder d = make_neon_decoder(t);
    const int64_t blocks_per_row = cols / bs;
    float scales[SCALE_BATCH];
    for (int64_t r = row_begin; r < row_end; r++) {
        float32x4_t acc = vdupq_n_f32(0);
        for (int64_t kb = 0; kb < blocks_per_row; kb += SCALE_BATCH) {
            int64_t nb = blocks_per_row - kb < SCALE_BATCH ? blocks_per_row - kb : SCALE_BATCH;
            lq_block_scales_neon(t, r * blocks_per_row + kb, nb, scales);
            for (int64_t k = 0; k < nb; k++) {
                int64_t col = (kb + k) * bs;
                float32x4_t p0 = vdupq_n_f32(0), p1 = vdupq_n_f32(0);
                for (int64_t j = 0; j < bs; j += 16) {
                    float32x4_t v[4];
                    decode16(&d, t, (r * cols + col + j) >> 4, v);
                    const float *xj = x + col + j;
                    p0 = vfmaq_f32(p0, v[0], vld1q_f32(xj));
                    p1 = vfmaq_f32(p1, v[1], vld1q_f32(xj + 4));
                    p0 = vfmaq_f32(p0, v[2], vld1q_f32(xj + 8));
                    p1 = vfmaq_f32(p1, v[3], vld1q_f32(xj + 12));
                }
                acc = vfmaq_n_f32(acc, vaddq_f32(p0, p1), scales[k]);
            }
        }
        y[r] = vaddvq_f32(acc);
    }
}
#endif
