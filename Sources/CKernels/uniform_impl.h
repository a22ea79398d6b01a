// The per-level uniform-integer kernels that uniform_dispatch.c chooses between.
#ifndef LQ_UNIFORM_IMPL_H
#define LQ_UNIFORM_IMPL_H

#include "lq_uniform.h"

void lq_uniform_dequantize_scalar(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);
void lq_uniform_gemv_scalar(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);
#if defined(__x86_64__)
void lq_uniform_dequantize_avx2(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);
void lq_uniform_gemv_avx2(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);
#endif
#if defined(__aarch64__)
void lq_uniform_dequantize_neon(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);
void lq_uniform_gemv_neon(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);
#endif

#endif
