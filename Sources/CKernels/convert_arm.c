// NEON conversion kernels for arm64.
#if defined(__aarch64__)
#include <arm_neon.h>

#include "convert_impl.h"

void lq_f16_to_f32_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) dst[i] = lq_f16_to_f32_ref(src[i]);
}

void lq_bf16_to_f32_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(src + i);
        vst1q_u32((uint32_t *)(dst + i), vshll_n_u16(vget_low_u16(h), 16));
        vst1q_u32((uint32_t *)(dst + i + 4), vshll_high_n_u16(h, 16));
    }
    for (; i < n; i++) dst[i] = lq_bf16_to_f32_ref(src[i]);
}

void lq_f32_to_f16_neon(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x4_t lo = vcvt_f16_f32(vld1q_f32(src + i));
        float16x8_t h = vcvt_high_f16_f32(lo, vld1q_f32(src + i + 4));
        vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) dst[i] = lq_f32_to_f16_ref(src[i]);
}

void lq_f32_to_bf16_neon(const float *src, uint16_t *dst, size_t n) {
    const uint32x4_t bias = vdupq_n_u32(0x7fff);
    const uint32x4_t one = vdupq_n_u32(1);
    const uint32x4_t inf = vdupq_n_u32(0x7f800000);
    const uint32x4_t quiet = vdupq_n_u32(0x00400000);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32x4_t x = vld1q_u32((const uint32_t *)(src + i));
        uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), one);
        uint32x4_t rounded = vaddq_u32(x, vaddq_u32(bias, lsb));
        uint32x4_t is_nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffff)), inf);
        uint32x4_t v = vbslq_u32(is_nan, vorrq_u32(x, quiet), rounded);
        vst1_u16(dst + i, vshrn_n_u32(v, 16));
    }
    for (; i < n; i++) dst[i] = lq_f32_to_bf16_ref(src[i]);
}
/// Four 16-bit floats widened to fp32 (bf16: the bits shifted into the high half).
static inline float32x4_t widen4(int is_bf16, const uint16_t *p) {
    uint16x4_t h = vld1_u16(p);
    return is_bf16 ? vreinterpretq_f32_u32(vshll_n_u16(h, 16)) : vcvt_f32_f16(vreinterpret_f16_u16(h));
}

void lq_gemv16_neon(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint16_t *row = w + r * cols;
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
        int64_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            a0 = vfmaq_f32(a0, widen4(is_bf16, row + c), vld1q_f32(x + c));
            a1 = vfmaq_f32(a1, widen4(is_bf16, row + c + 4), vld1q_f32(x + c + 4));
            a2 = vfmaq_f32(a2, widen4(is_bf16, row + c + 8), vld1q_f32(x + c + 8));
            a3 = vfmaq_f32(a3, widen4(is_bf16, row + c + 12), vld1q_f32(x + c + 12));
        }
        for (; c + 4 <= cols; c += 4) a0 = vfmaq_f32(a0, widen4(is_bf16, row + c), vld1q_f32(x + c));
        float acc = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; c < cols; c++) acc += (is_bf16 ? lq_bf16_to_f32_ref(row[c]) : lq_f16_to_f32_ref(row[c])) * x[c];
        y[r] = acc;
    }
}
#endif
