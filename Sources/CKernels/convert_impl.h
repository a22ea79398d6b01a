// Internal: the per-level conversion kernels behind lq_convert.h's dispatchers.
#ifndef LQ_CONVERT_IMPL_H
#define LQ_CONVERT_IMPL_H
#include "lq_convert.h"

void lq_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n);
void lq_bf16_to_f32_scalar(const uint16_t *src, float *dst, size_t n);
void lq_f32_to_f16_scalar(const float *src, uint16_t *dst, size_t n);
void lq_f32_to_bf16_scalar(const float *src, uint16_t *dst, size_t n);
void lq_gemv16_scalar(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);

#if defined(__x86_64__)
void lq_f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n);
void lq_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n);
void lq_f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n);
void lq_f32_to_bf16_avx2(const float *src, uint16_t *dst, size_t n);
void lq_gemv16_avx2(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
#endif
#if defined(__aarch64__)
void lq_f16_to_f32_neon(const uint16_t *src, float *dst, size_t n);
void lq_bf16_to_f32_neon(const uint16_t *src, float *dst, size_t n);
void lq_f32_to_f16_neon(const float *src, uint16_t *dst, size_t n);
void lq_f32_to_bf16_neon(const float *src, uint16_t *dst, size_t n);
void lq_gemv16_neon(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);
#endif
#endif
