// AVX2 + F16C conversion kernels. Compiled for every x86-64 build through per-function
// target attributes; only called when lq_cpu_detect() reports the features.
#if defined(__x86_64__)
#include <immintrin.h>

#include "convert_impl.h"

#define LQ_AVX2 __attribute__((target("avx2,fma,f16c")))

LQ_AVX2 void lq_f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
    }
    for (; i < n; i++) dst[i] = lq_f16_to_f32_ref(src[i]);
}

LQ_AVX2 void lq_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    const __m256i zero = _mm256_setzero_si256();
    for (; i + 16 <= n; i += 16) {
        // Interleaving zeros below each 16-bit value is the shift by 16; the permute puts
        // elements 0-7 in the low halves of both lanes so the unpacks keep element order.
        __m256i h = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(src + i)), 0xd8);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_unpacklo_epi16(zero, h));
        _mm256_storeu_si256((__m256i *)(dst + i + 8), _mm256_unpackhi_epi16(zero, h));
    }
    for (; i < n; i++) dst[i] = lq_bf16_to_f32_ref(src[i]);
}

LQ_AVX2 void lq_f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = lq_f32_to_f16_ref(src[i]);
}

LQ_AVX2 void lq_f32_to_bf16_avx2(const float *src, uint16_t *dst, size_t n) {
    const __m256i bias = _mm256_set1_epi32(0x7fff);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x00400000);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(src + i + 8 * k));
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
            __m256i rounded = _mm256_add_epi32(x, _mm256_add_epi32(bias, lsb));
            __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
            __m256i nan_val = _mm256_or_si256(x, quiet);
            r[k] = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, nan_val, is_nan), 16);
        }
        // packus works per 128-bit lane; permute restores element order.
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(dst + i), packed);
    }
    for (; i < n; i++) dst[i] = lq_f32_to_bf16_ref(src[i]);
}
/// Eight 16-bit floats widened to fp32 (bf16: the bits shifted into the high half).
LQ_AVX2 static inline __m256 widen8(int is_bf16, const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return is_bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

LQ_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LQ_AVX2 void lq_gemv16_avx2(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint16_t *row = w + r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            a0 = _mm256_fmadd_ps(widen8(is_bf16, row + c), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(widen8(is_bf16, row + c + 8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(widen8(is_bf16, row + c + 16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(widen8(is_bf16, row + c + 24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c + 8 <= cols; c += 8) a0 = _mm256_fmadd_ps(widen8(is_bf16, row + c), _mm256_loadu_ps(x + c), a0);
        float acc = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < cols; c++) acc += (is_bf16 ? lq_bf16_to_f32_ref(row[c]) : lq_f16_to_f32_ref(row[c])) * x[c];
        y[r] = acc;
    }
}
#endif
