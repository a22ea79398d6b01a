// Level dispatch for the uniform-integer kernels (a g_idx always takes the scalar path).
#include "uniform_impl.h"

#include "dispatch.h"

void lq_uniform_dequantize_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    if (m->g_idx) level = LQ_LEVEL_SCALAR;
    LQ_PICK(level, lq_uniform_dequantize, m, row_begin, row_end, out);
}
void lq_uniform_dequantize(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    lq_uniform_dequantize_level(lq_active_level(), m, row_begin, row_end, out);
}
void lq_uniform_gemv_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    if (m->g_idx) level = LQ_LEVEL_SCALAR;
    LQ_PICK(level, lq_uniform_gemv, m, row_begin, row_end, x, y);
}
void lq_uniform_gemv(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    lq_uniform_gemv_level(lq_active_level(), m, row_begin, row_end, x, y);
}
