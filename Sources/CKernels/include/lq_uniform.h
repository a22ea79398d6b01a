// Kernels for uniform-integer matrices (GPTQ / round-to-nearest codes): the scalar reference and
// AVX2 / NEON paths behind one dispatch, as for the NormalFloat kernels. The CUDA library takes the
// same layout (lq_cuda_uniform_upload in lq_cuda.h).
#ifndef LQ_UNIFORM_H
#define LQ_UNIFORM_H

#include <stdint.h>

#include "lq_cpu.h"
#include "lq_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/// A uniform-integer matrix as the kernels read it: codes one byte each, row-major [rows, cols];
/// per group of columns a scale and a zero point per row, both stored [groups, rows] (GPTQ's
/// layout), groups = ceil(cols / group). Column c is in group c / group (the last group may be
/// partial), or in g_idx[c] when g_idx is given (act-order: GPTQ's int32 g_idx, each below groups).
/// Ŵ[r, c] = s·(q − z), lq_uniform_value.
typedef struct {
    const uint8_t *codes;
    const float *scales;
    const float *zeros;
    int64_t rows, cols, group;
    /// NULL: sequential groups. Matrices with a g_idx run the scalar path at every level.
    const int32_t *g_idx;
} lq_uniform;

/// Rows [row_begin, row_end) of Ŵ into out, row-major: s·((float)q − z), bit-equal at every level.
void lq_uniform_dequantize_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);
void lq_uniform_dequantize(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);

/// y[r] = Σ_g s·Σ_{c ∈ g} (q − z)·x[c] for rows [row_begin, row_end) (y indexed by row); with a
/// g_idx, y[r] = Σ_c Ŵ[r, c]·x[c] in column order. The SIMD paths sum in another order than the
/// scalar one: equal within rounding, not bit for bit.
void lq_uniform_gemv_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);
void lq_uniform_gemv(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif
