// AVX2 uniform-integer kernels: 8 codes widened to fp32 per step (vpmovzxbd + vcvtdq2ps).
#if defined(__x86_64__)
#include <immintrin.h>

#include "uniform_impl.h"

#define LQ_AVX2 __attribute__((target("avx2,fma")))

LQ_AVX2 static inline __m256 widen8(const uint8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

LQ_AVX2 void lq_uniform_dequantize_avx2(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        float *dst = out + (r - row_begin) * m->cols;
        for (int64_t g = 0; g < groups; g++) {
            float s = m->scales[g * m->rows + r], z = m->zeros[g * m->rows + r];
            __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z);
            int64_t c = g * m->group, c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (; c + 8 <= c1; c += 8) _mm256_storeu_ps(dst + c, _mm256_mul_ps(vs, _mm256_sub_ps(widen8(q + c), vz)));
            for (; c < c1; c++) dst[c] = lq_uniform_value(q[c], s, z);
        }
    }
}

LQ_AVX2 void lq_uniform_gemv_avx2(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    int64_t groups = (m->cols + m->group - 1) / m->group;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *q = m->codes + r * m->cols;
        __m256 total = _mm256_setzero_ps();
        float tail = 0;
        for (int64_t g = 0; g < groups; g++) {
            float s = m->scales[g * m->rows + r], z = m->zeros[g * m->rows + r];
            __m256 vz = _mm256_set1_ps(z), acc = _mm256_setzero_ps();
            int64_t c = g * m->group, c1 = (g + 1) * m->group < m->cols ? (g + 1) * m->group : m->cols;
            for (; c + 8 <= c1; c += 8) acc = _mm256_fmadd_ps(_mm256_sub_ps(widen8(q + c), vz), _mm256_loadu_ps(x + c), acc);
            float rest = 0;
            for (; c < c1; c++) rest += ((float)q[c] - z) * x[c];
            total = _mm256_fmadd_ps(_mm256_set1_ps(s), acc, total);
            tail += s * rest;
        }
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        y[r] = _mm_cvtss_f32(h) + tail;
    }
}
#endif
