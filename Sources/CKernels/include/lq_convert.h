// 16-bit float conversions: IEEE half (F16) and bfloat16 (BF16) to and from fp32.
// *_ref are the exact scalar references; the bulk functions take an explicit
// level (tests compare levels) or dispatch on lq_active_level().
#ifndef LQ_CONVERT_H
#define LQ_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include "lq_cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

float lq_f16_to_f32_ref(uint16_t h);
float lq_bf16_to_f32_ref(uint16_t h);
/// Round to nearest, ties to even; NaN stays NaN (quiet), overflow becomes infinity.
uint16_t lq_f32_to_f16_ref(float f);
/// Round to nearest, ties to even (as PyTorch's c10::BFloat16); NaN becomes a quiet NaN.
uint16_t lq_f32_to_bf16_ref(float f);

void lq_f16_to_f32_level(lq_level level, const uint16_t *src, float *dst, size_t n);
void lq_bf16_to_f32_level(lq_level level, const uint16_t *src, float *dst, size_t n);
void lq_f32_to_f16_level(lq_level level, const float *src, uint16_t *dst, size_t n);
void lq_f32_to_bf16_level(lq_level level, const float *src, uint16_t *dst, size_t n);

void lq_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void lq_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void lq_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void lq_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

/// y[r] = Σ_c W[r, c] · x[c] for rows [row_begin, row_end) of a row-major matrix of 16-bit floats
/// (bfloat16 when is_bf16, else IEEE half) with `cols` columns, each weight widened to fp32 in
/// registers (exact), never into a buffer. y is indexed by absolute row. The scalar reference
/// accumulates in double.
void lq_gemv16_level(lq_level level, int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end,
                     const float *x, float *y);
void lq_gemv16(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif
