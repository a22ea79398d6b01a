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

#endif
