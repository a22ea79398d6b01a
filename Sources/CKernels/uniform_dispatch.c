// Level dispatch for the uniform-integer kernels.
#include "uniform_impl.h"

#if defined(__x86_64__)
#define LQ_PICK(level, name, ...)                                              \
    do {                                                                       \
        if ((level) == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2) {    \
            name##_avx2(__VA_ARGS__);                                          \
            return;                                                            \
        }                                                                      \
        name##_scalar(__VA_ARGS__);                                            \
    } while (0)
#elif defined(__aarch64__)
#define LQ_PICK(level, name, ...)                                              \
    do {                                                                       \
        if ((level) == LQ_LEVEL_NEON) {                                        \
            name##_neon(__VA_ARGS__);                                          \
            return;                                                            \
        }                                                                      \
        name##_scalar(__VA_ARGS__);                                            \
    } while (0)
#else
#define LQ_PICK(level, name, ...) name##_scalar(__VA_ARGS__)
#endif

void lq_uniform_dequantize_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    LQ_PICK(level, lq_uniform_dequantize, m, row_begin, row_end, out);
}
void lq_uniform_dequantize(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    lq_uniform_dequantize_level(lq_active_level(), m, row_begin, row_end, out);
}
void lq_uniform_gemv_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    LQ_PICK(level, lq_uniform_gemv, m, row_begin, row_end, x, y);
}
void lq_uniform_gemv(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    lq_uniform_gemv_level(lq_active_level(), m, row_begin, row_end, x, y);
}
