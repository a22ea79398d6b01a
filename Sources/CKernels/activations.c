// Activation kernels: scalar references, AVX2 and NEON paths with a polynomial exp, dispatch.
#include <math.h>

#include "lq_activations.h"

// ---- scalar references ----
static void softmax_scalar(float *row, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = row[i] > m ? row[i] : m;
    double sum = 0;  // the reference sums in double
    for (int64_t i = 0; i < n; i++) { row[i] = expf(row[i] - m); sum += row[i]; }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) row[i] *= inv;
}

static double logsumexp_scalar(const float *row, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = row[i] > m ? row[i] : m;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)expf(row[i] - m);
    return (double)m + log(sum);
}

static void silu_mul_scalar(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void silu_mul_backward_scalar(const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], s = 1.0f / (1.0f + expf(-x));
        du[i] = dm[i] * x * s;
        dg[i] = dm[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
}

// ---- AVX2 ----
#if defined(__x86_64__)
#include <immintrin.h>
#define LQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/// e^x for x in [-87.3, 88.7]: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6 polynomial
/// (Cephes expf coefficients), times 2^n built in the exponent bits.
LQ_AVX2 static inline __m256 exp_avx2(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504019f);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

LQ_AVX2 static float hmax_avx2(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

LQ_AVX2 static float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LQ_AVX2 static float row_max_avx2(const float *row, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(row + i));
    float m = hmax_avx2(vm);
    for (; i < n; i++) m = row[i] > m ? row[i] : m;
    return m;
}

LQ_AVX2 static void softmax_avx2(float *row, int64_t n) {
    const float m = row_max_avx2(row, n);
    const __m256 vm = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();  // double sums, as the reference
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i), vm));
        _mm256_storeu_ps(row + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    double sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; i++) { row[i] = expf(row[i] - m); sum += row[i]; }
    const float invf = (float)(1.0 / sum);
    const __m256 inv = _mm256_set1_ps(invf);
    i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), inv));
    for (; i < n; i++) row[i] *= invf;
}

LQ_AVX2 static double logsumexp_avx2(const float *row, int64_t n) {
    const float m = row_max_avx2(row, n);
    const __m256 vm = _mm256_set1_ps(m);
    // Four accumulators of 8 lanes keep the float sums short (under 1/32 of n terms each).
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i), vm)));
        s1 = _mm256_add_ps(s1, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i + 8), vm)));
        s2 = _mm256_add_ps(s2, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i + 16), vm)));
        s3 = _mm256_add_ps(s3, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + i + 24), vm)));
    }
    double sum = (double)hsum_avx2(s0) + (double)hsum_avx2(s1) + (double)hsum_avx2(s2) + (double)hsum_avx2(s3);
    for (; i < n; i++) sum += (double)expf(row[i] - m);
    return (double)m + log(sum);
}

LQ_AVX2 static void silu_mul_avx2(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 d = _mm256_add_ps(one, exp_avx2(_mm256_xor_ps(x, sign)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, d), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

LQ_AVX2 static void silu_mul_backward_avx2(const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), d = _mm256_loadu_ps(dm + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_xor_ps(x, sign))));
        _mm256_storeu_ps(du + i, _mm256_mul_ps(_mm256_mul_ps(d, x), s));
        __m256 t = _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one);
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(u + i)), s), t));
    }
    silu_mul_backward_scalar(dm + i, g + i, u + i, dg + i, du + i, n - i);
}
#endif

// ---- NEON ----
#if defined(__aarch64__)
#include <arm_neon.h>

static inline float32x4_t exp_neon(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.3762626647949f)), vdupq_n_f32(-87.3365447504019f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_n_f32(x, n, 0.693359375f);
    r = vfmsq_n_f32(r, n, -2.12194440e-4f);
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static float row_max_neon(const float *row, int64_t n) {
    float32x4_t vm = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vm = vmaxq_f32(vm, vld1q_f32(row + i));
    float m = vmaxvq_f32(vm);
    for (; i < n; i++) m = row[i] > m ? row[i] : m;
    return m;
}

static void softmax_neon(float *row, int64_t n) {
    const float m = row_max_neon(row, n);
    float64x2_t s0 = vdupq_n_f64(0), s1 = vdupq_n_f64(0);  // double sums, as the reference
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(row + i), vdupq_n_f32(m)));
        vst1q_f32(row + i, e);
        s0 = vaddq_f64(s0, vcvt_f64_f32(vget_low_f32(e)));
        s1 = vaddq_f64(s1, vcvt_high_f64_f32(e));
    }
    double sum = vaddvq_f64(vaddq_f64(s0, s1));
    for (; i < n; i++) { row[i] = expf(row[i] - m); sum += row[i]; }
    const float inv = (float)(1.0 / sum);
    i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(row + i, vmulq_n_f32(vld1q_f32(row + i), inv));
    for (; i < n; i++) row[i] *= inv;
}

static double logsumexp_neon(const float *row, int64_t n) {
    const float m = row_max_neon(row, n);
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vaddq_f32(s0, exp_neon(vsubq_f32(vld1q_f32(row + i), vdupq_n_f32(m))));
        s1 = vaddq_f32(s1, exp_neon(vsubq_f32(vld1q_f32(row + i + 4), vdupq_n_f32(m))));
        s2 = vaddq_f32(s2, exp_neon(vsubq_f32(vld1q_f32(row + i + 8), vdupq_n_f32(m))));
        s3 = vaddq_f32(s3, exp_neon(vsubq_f32(vld1q_f32(row + i + 12), vdupq_n_f32(m))));
    }
    double sum = (double)vaddvq_f32(s0) + (double)vaddvq_f32(s1) + (double)vaddvq_f32(s2) + (double)vaddvq_f32(s3);
    for (; i < n; i++) sum += (double)expf(row[i] - m);
    return (double)m + log(sum);
}

static void silu_mul_neon(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vld1q_f32(g + i);
        float32x4_t d = vaddq_f32(vdupq_n_f32(1.0f), exp_neon(vnegq_f32(x)));
        vst1q_f32(g + i, vmulq_f32(vdivq_f32(x, d), vld1q_f32(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void silu_mul_backward_neon(const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vld1q_f32(g + i), d = vld1q_f32(dm + i);
        float32x4_t s = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(x))));
        vst1q_f32(du + i, vmulq_f32(vmulq_f32(d, x), s));
        float32x4_t t = vfmaq_f32(one, x, vsubq_f32(one, s));
        vst1q_f32(dg + i, vmulq_f32(vmulq_f32(vmulq_f32(d, vld1q_f32(u + i)), s), t));
    }
    silu_mul_backward_scalar(dm + i, g + i, u + i, dg + i, du + i, n - i);
}
#endif

// ---- dispatch ----
static int use_avx2(lq_level level) { return level == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2; }

void lq_softmax_level(lq_level level, float *row, int64_t n) {
#if defined(__x86_64__)
    if (use_avx2(level)) { softmax_avx2(row, n); return; }
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) { softmax_neon(row, n); return; }
#endif
    (void)level;
    softmax_scalar(row, n);
}

double lq_logsumexp_level(lq_level level, const float *row, int64_t n) {
#if defined(__x86_64__)
    if (use_avx2(level)) return logsumexp_avx2(row, n);
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) return logsumexp_neon(row, n);
#endif
    (void)level;
    return logsumexp_scalar(row, n);
}

void lq_silu_mul_level(lq_level level, float *g, const float *u, int64_t n) {
#if defined(__x86_64__)
    if (use_avx2(level)) { silu_mul_avx2(g, u, n); return; }
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) { silu_mul_neon(g, u, n); return; }
#endif
    (void)level;
    silu_mul_scalar(g, u, n);
}

void lq_silu_mul_backward_level(lq_level level, const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n) {
#if defined(__x86_64__)
    if (use_avx2(level)) { silu_mul_backward_avx2(dm, g, u, dg, du, n); return; }
#elif defined(__aarch64__)
    if (level == LQ_LEVEL_NEON) { silu_mul_backward_neon(dm, g, u, dg, du, n); return; }
#endif
    (void)level;
    silu_mul_backward_scalar(dm, g, u, dg, du, n);
}

void lq_silu_mul_backward(const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n) {
    lq_silu_mul_backward_level(lq_active_level(), dm, g, u, dg, du, n);
}

void lq_softmax(float *row, int64_t n) { lq_softmax_level(lq_active_level(), row, n); }
double lq_logsumexp(const float *row, int64_t n) { return lq_logsumexp_level(lq_active_level(), row, n); }
void lq_silu_mul(float *g, const float *u, int64_t n) { lq_silu_mul_level(lq_active_level(), g, u, n); }
