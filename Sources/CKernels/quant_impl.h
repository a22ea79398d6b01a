// Internal: per-level quantization kernels and shared inline helpers.
#ifndef LQ_QUANT_IMPL_H
#define LQ_QUANT_IMPL_H
#include "lq_quant.h"

void lq_dequantize_scalar(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_scalar(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
double lq_block_error_scalar(const float *w, const float *fisher, int64_t start, int64_t count, int32_t block_size,
                             const float *scales, const float *midpoints, const float *codebook, int bits);
/// Element i's term of lq_block_error_level against its block's scale s.
static inline double lq_block_error_element(const float *w, const float *fisher, int64_t i, float s, const float *midpoints,
                                            const float *codebook, int bits) {
    float v = w[i] / s;
    if (v != v) v = 0.0f;  // as lq_encode_blocks: 0/0 in an all-zero block
    const float d = codebook[lq_nearest_code(v, midpoints, 1 << bits)] * s;
    const double e = (double)w[i] - (double)d;
    return fisher ? (double)fisher[i] * e * e : e * e;
}

/// The fixed order in which every level adds its eight lane sums.
static inline double lq_lane_total(const double acc[8]) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}
#if defined(__x86_64__)
double lq_block_error_avx2(const float *w, const float *fisher, int64_t start, int64_t count, int32_t block_size,
                           const float *scales, const float *midpoints, const float *codebook, int bits);
void lq_dequantize_avx2(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_avx2(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
/// lq_block_scales with the integer-scale groups divided eight blocks at a time (the same values).
void lq_block_scales_avx2(const lq_qtensor *t, int64_t first, int64_t count, float *out);
#endif
#if defined(__aarch64__)
void lq_dequantize_neon(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_neon(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
/// lq_block_scales with the integer-scale groups divided four blocks at a time (the same values).
void lq_block_scales_neon(const lq_qtensor *t, int64_t first, int64_t count, float *out);
#endif

/// Decodes the LQ-LoRA integer scales of blocks [b, b + count) of one live group (step and offset
/// as in lq_layout.h) as far as a SIMD width allows; returns how many it wrote to out[0..).
typedef int64_t (*lq_uint_scales_kernel)(const lq_qtensor *t, int64_t b, int64_t count, float step, float *out);

/// lq_block_scales with the integer-scale groups decoded by `kernel` (the rest, and every other
/// scale kind, by the scalar reference; NULL: all of it): the SIMD paths divide several blocks at once.
void lq_block_scales_with(const lq_qtensor *t, int64_t first, int64_t count, float *out, lq_uint_scales_kernel kernel);

/// Unpacks codes [index, index + count) into one byte each. Generic, used by all levels for
/// edges and by the scalar path throughout.
void lq_unpack_codes(const uint8_t *packed, int bits, int64_t index, int64_t count, uint8_t *out);

#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

/// Byte indices of codes [16g, 16g + 16) of a packed stream (the exact and int8 NEON kernels).
static inline uint8x16_t lq_neon_indices16(const uint8_t *p, int bits, int64_t g) {
    if (bits == 4) {
        uint8x8_t v = vld1_u8(p + 8 * g);
        uint8x8_t hi = vshr_n_u8(v, 4), lo = vand_u8(v, vdup_n_u8(0x0f));
        return vcombine_u8(vzip1_u8(hi, lo), vzip2_u8(hi, lo));
    }
    if (bits == 2) {
        uint8_t four[16] = {0};
        memcpy(four, p + 4 * g, 4);
        static const uint8_t rep[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
        static const int8_t shifts[16] = {-6, -4, -2, 0, -6, -4, -2, 0, -6, -4, -2, 0, -6, -4, -2, 0};
        uint8x16_t bytes = vqtbl1q_u8(vld1q_u8(four), vld1q_u8(rep));
        return vandq_u8(vshlq_u8(bytes, vld1q_s8(shifts)), vdupq_n_u8(3));
    }
    if (bits == 3) {  // two big-endian 24-bit words, each shifted to its eight codes
        const uint8_t *q = p + 6 * g;
        const uint32_t w0 = ((uint32_t)q[0] << 16) | ((uint32_t)q[1] << 8) | q[2];
        const uint32_t w1 = ((uint32_t)q[3] << 16) | ((uint32_t)q[4] << 8) | q[5];
        static const int32_t first[4] = {-21, -18, -15, -12}, second[4] = {-9, -6, -3, 0};
        const int32x4_t s0 = vld1q_s32(first), s1 = vld1q_s32(second);
        const uint16x8_t a = vcombine_u16(vmovn_u32(vshlq_u32(vdupq_n_u32(w0), s0)), vmovn_u32(vshlq_u32(vdupq_n_u32(w0), s1)));
        const uint16x8_t b = vcombine_u16(vmovn_u32(vshlq_u32(vdupq_n_u32(w1), s0)), vmovn_u32(vshlq_u32(vdupq_n_u32(w1), s1)));
        return vandq_u8(vcombine_u8(vmovn_u16(a), vmovn_u16(b)), vdupq_n_u8(7));
    }
    uint8_t idx[16];
    lq_unpack_codes(p, bits, 16 * g, 16, idx);
    return vld1q_u8(idx);
}
#endif

#endif
