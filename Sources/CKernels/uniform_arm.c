// NEON uniform-integer kernels: 8 codes widened to fp32 per step (uxtl twice + ucvtf).
#if defined(__aarch64__)
#include <arm_neon.h>

#include "uniform_impl.h"

static inline void widen8(const uint8_t *q, float32x4_t *lo, float32x4_t *hi) {
    uint16x8_t w = vmovl_u8(vld1_u8(q));
    *lo = vcvtq_f32_u32(vmovl_u16(vget_low_u16(w)));
    *hi = vcvtq_f32_u32(vmovl_u16(vget_high_u16(w)));
}

void lq_uniform_dequantize_neon(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        float *dst = out + (r - row_begin) * m->cols;
        for (int64_t g = 0; g < groups; g++) {
            float s = m->scales[g * m->rows + r], z = m->zeros[g * m->rows + r];
            float32x4_t vs = vdupq_n_f32(s), vz = vdupq_n_f32(z);
            int64_t c = g * m->group, c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (; c + 8 <= c1; c += 8) {
                float32x4_t lo, hi;
                widen8(q + c, &lo, &hi);
                vst1q_f32(dst + c, vmulq_f32(vs, vsubq_f32(lo, vz)));
                vst1q_f32(dst + c + 4, vmulq_f32(vs, vsubq_f32(hi, vz)));
            }
            for (; c < c1; c++) dst[c] = lq_uniform_value(q[c], s, z);
        }
    }
}

void lq_uniform_gemv_neon(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        float32x4_t total = vdupq_n_f32(0);
        float tail = 0;
        for (int64_t g = 0; g < groups; g++) {
            float s = m->scales[g * m->rows + r], z = m->zeros[g * m->rows + r];
            float32x4_t vz = vdupq_n_f32(z), a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
            int64_t c = g * m->group, c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (; c + 8 <= c1; c += 8) {
                float32x4_t lo, hi;
                widen8(q + c, &lo, &hi);
                a0 = vfmaq_f32(a0, vsubq_f32(lo, vz), vld1q_f32(x + c));
                a1 = vfmaq_f32(a1, vsubq_f32(hi, vz), vld1q_f32(x + c + 4));
            }
            float rest = 0;
            for (; c < c1; c++) rest += ((float)q[c] - z) * x[c];
            total = vfmaq_n_f32(total, vaddq_f32(a0, a1), s);
            tail += s * rest;
        }
        y[r] = vaddvq_f32(total) + tail;
    }
}
#endif
