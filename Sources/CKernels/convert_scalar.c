// Scalar references for the 16-bit float conversions: exact, portable, the oracle for SIMD.
#include "convert_impl.h"

#include <string.h>

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float f32_from(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lq_f16_to_f32_ref(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        // Zero or subnormal: mantissa · 2^-24 is exact in fp32.
        float magnitude = (float)mantissa * 0x1p-24f;
        return f32_from(f32_bits(magnitude) | sign);
    }
    if (exponent == 31) return f32_from(sign | 0x7f800000u | (mantissa << 13));
    return f32_from(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float lq_bf16_to_f32_ref(uint16_t h) { return f32_from((uint32_t)h << 16); }

uint16_t lq_f32_to_f16_ref(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {  // infinity or NaN (keep the top payload bits, force quiet)
        if (x == 0x7f800000u) return sign | 0x7c00u;
        return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu);
    }
    if (x >= 0x477ff000u) return sign | 0x7c00u;  // ≥ 65520 rounds to infinity
    uint32_t e = x >> 23;
    if (e < 113) {  // below 2^-14: half subnormal (or zero)
        if (e < 102) return sign;  // below 2^-25: rounds to zero
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // 14 ... 24
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = ((e - 112) << 10) | ((x & 0x7fffffu) >> 13);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return sign | (uint16_t)r;
}

uint16_t lq_f32_to_bf16_ref(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

void lq_f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lq_f16_to_f32_ref(src[i]);
}
void lq_bf16_to_f32_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lq_bf16_to_f32_ref(src[i]);
}
void lq_f32_to_f16_scalar(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lq_f32_to_f16_ref(src[i]);
}
void lq_f32_to_bf16_scalar(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lq_f32_to_bf16_ref(src[i]);
}

void lq_gemv16_scalar(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint16_t *row = w + r * cols;
        double acc = 0;
        for (int64_t c = 0; c < cols; c++) {
            float v = is_bf16 ? lq_bf16_to_f32_ref(row[c]) : lq_f16_to_f32_ref(row[c]);
            acc += (double)v * x[c];
        }
        y[r] = (float)acc;
    }
}
