// Kernels for uniform-integer matrices (GPTQ / round-to-nearest codes): the scalar reference and
// AVX2 / NEON paths behind one dispatch, as for the NormalFloat kernels.
#ifndef LQ_UNIFORM_H
#define LQ_UNIFORM_H

#include <stdint.h>

#include "lq_cpu.h"

/// A uniform-integer matrix as the kernels read it: codes one byte each, row-major [rows, cols];
/// per group of `group` consecutive columns a scale and a zero point per row, both stored
/// [groups, rows] (GPTQ's layout); the last group may be partial. Ŵ[r, c] = s·(q − z).
typedef struct {
    const uint8_t *codes;
    const float *scales;
    const float *zeros;
    int64_t rows, cols, group;
} lq_uniform;

/// Rows [row_begin, row_end) of Ŵ into out, row-major: s·((float)q − z), bit-equal at every level.
void lq_uniform_dequantize_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);
void lq_uniform_dequantize(const lq_uniform *m, int64_t row_begin, int64_t row_end, float *out);

/// y[r] = Σ_g s·Σ_{c ∈ g} (q − z)·x[c] for rows [row_begin, row_end) (y indexed by row). The SIMD
/// paths sum in another order than the scalar one: equal within rounding, not bit for bit.
void lq_uniform_gemv_level(lq_level level, const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);
void lq_uniform_gemv(const lq_uniform *m, int64_t row_begin, int64_t row_end, const float *x, float *y);

#endif
