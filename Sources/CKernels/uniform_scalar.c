// The scalar reference of the uniform-integer kernels: the arithmetic every SIMD path must equal
// (dequantization bit for bit; the GEMV within rounding), and the only path for act-order's g_idx.
#include "uniform_impl.h"

void lq_uniform_dequantize_scalar(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        float *dst = out + (r - row_begin) * m->cols;
        if (m->g_idx) {
            for (int64_t c = 0; c < m->cols; c++) {
                const int64_t g = (int64_t)m->g_idx[c] * m->rows + r;
                dst[c] = lq_uniform_value(q[c], m->scales[g], m->zeros[g]);
            }
            continue;
        }
        for (int64_t g = 0; g < groups; g++) {
            float s = m->scales[g * m->rows + r], z = m->zeros[g * m->rows + r];
            int64_t c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (int64_t c = g * m->group; c < c1; c++) dst[c] = lq_uniform_value(q[c], s, z);
        }
    }
}

void lq_uniform_gemv_scalar(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        float sum = 0;
        if (m->g_idx) {
            for (int64_t c = 0; c < m->cols; c++) {
                const int64_t g = (int64_t)m->g_idx[c] * m->rows + r;
                sum += lq_uniform_value(q[c], m->scales[g], m->zeros[g]) * x[c];
            }
            y[r] = sum;
            continue;
        }
        for (int64_t g = 0; g < groups; g++) {
            float z = m->zeros[g * m->rows + r], acc = 0;
            int64_t c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (int64_t c = g * m->group; c < c1; c++) acc += ((float)q[c] - z) * x[c];
            sum += m->scales[g * m->rows + r] * acc;
        }
        y[r] = sum;
    }
}
