// Level dispatch for the quantization kernels.
#include "quant_impl.h"

void lq_dequantize_level(lq_level level, const lq_qtensor *t, int64_t start, int64_t count, float *out) {
#if defined(__x86_64__)
    if (level == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2) { lq_dequantize_avx2(t, start, count, out); return; }
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) { lq_dequantize_neon(t, start, count, out); return; }
#endif
    (void)level;
    lq_dequantize_scalar(t, start, count, out);
}

void lq_gemv_level(lq_level level, const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end,
                   const float *x, float *y) {
#if defined(__x86_64__)
    if (level == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2) { lq_gemv_avx2(t, cols, row_begin, row_end, x, y); return; }
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) { lq_gemv_neon(t, cols, row_begin, row_end, x, y); return; }
#endif
    (void)level;
    lq_gemv_scalar(t, cols, row_begin, row_end, x, y);
}

void lq_dequantize(const lq_qtensor *t, int64_t start, int64_t count, float *out) {
    lq_dequantize_level(lq_active_level(), t, start, count, out);
}

void lq_gemv(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    lq_gemv_level(lq_active_level(), t, cols, row_begin, row_end, x, y);
}

double lq_block_error_level(lq_level level, const float *w, const float *fisher, int64_t start, int64_t count,
                            int32_t block_size, const float *scales, const float *midpoints, const float *codebook, int bits) {
#if defined(__x86_64__)
    if (level == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2)
        return lq_block_error_avx2(w, fisher, start, count, block_size, scales, midpoints, codebook, bits);
#endif
    (void)level;  // NEON: the scalar twin (the error table is a one-off precompute)
    return lq_block_error_scalar(w, fisher, start, count, block_size, scales, midpoints, codebook, bits);
}
