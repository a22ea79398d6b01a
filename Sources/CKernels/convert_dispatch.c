// Level dispatch for the conversion kernels.
#include "convert_impl.h"

#include "dispatch.h"

void lq_f16_to_f32_level(lq_level level, const uint16_t *src, float *dst, size_t n) {
    LQ_PICK(level, lq_f16_to_f32, src, dst, n);
}
void lq_bf16_to_f32_level(lq_level level, const uint16_t *src, float *dst, size_t n) {
    LQ_PICK(level, lq_bf16_to_f32, src, dst, n);
}
void lq_f32_to_f16_level(lq_level level, const float *src, uint16_t *dst, size_t n) {
    LQ_PICK(level, lq_f32_to_f16, src, dst, n);
}
void lq_f32_to_bf16_level(lq_level level, const float *src, uint16_t *dst, size_t n) {
    LQ_PICK(level, lq_f32_to_bf16, src, dst, n);
}

void lq_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    lq_f16_to_f32_level(lq_active_level(), src, dst, n);
}
void lq_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    lq_bf16_to_f32_level(lq_active_level(), src, dst, n);
}
void lq_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    lq_f32_to_f16_level(lq_active_level(), src, dst, n);
}
void lq_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    lq_f32_to_bf16_level(lq_active_level(), src, dst, n);
}

void lq_gemv16_level(lq_level level, int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end,
                     const float *x, float *y) {
    LQ_PICK(level, lq_gemv16, is_bf16, w, cols, row_begin, row_end, x, y);
}
void lq_gemv16(int is_bf16, const uint16_t *w, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    lq_gemv16_level(lq_active_level(), is_bf16, w, cols, row_begin, row_end, x, y);
}
