// Level dispatch for the int8-activation kernels.
#include "q8_impl.h"

#include "dispatch.h"

void lq_q8_quantize_level(lq_level level, int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    LQ_PICK(level, lq_q8_quantize, bits, x, cols, q, d);
}
void lq_q8_quantize(int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    lq_q8_quantize_level(lq_active_level(), bits, x, cols, q, d);
}
void lq_q8_gemv_level(lq_level level, const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols,
                      int64_t row_begin, int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy) {
    LQ_PICK(level, lq_q8_gemv, t, codebook, cols, row_begin, row_end, x, y, ldy);
}
void lq_q8_gemv(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin, int64_t row_end,
                const lq_q8_rows *x, float *y, int64_t ldy) {
    lq_q8_gemv_level(lq_active_level(), t, codebook, cols, row_begin, row_end, x, y, ldy);
}

#if !defined(__x86_64__) && !defined(__aarch64__)
const char *lq_q8_dot(void) { return "none"; }
#endif
