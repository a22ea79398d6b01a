// Internal: per-level quantization kernels and shared inline helpers.
#ifndef LQ_QUANT_IMPL_H
#define LQ_QUANT_IMPL_H
#include "lq_quant.h"

void lq_dequantize_scalar(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_scalar(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
#if defined(__x86_64__)
void lq_dequantize_avx2(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_avx2(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
#endif
#if defined(__aarch64__)
void lq_dequantize_neon(const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_gemv_neon(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
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
