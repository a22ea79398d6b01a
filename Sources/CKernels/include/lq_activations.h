// Row-wise activation kernels of the forward pass: softmax, log-sum-exp, SiLU·gate, RMSNorm.
// The scalar references use libm's expf; the SIMD paths use a degree-6 polynomial exp accurate to
// about 2 ulp, so SIMD results agree with the references to a few ulp (not bit for bit).
#ifndef LQ_ACTIVATIONS_H
#define LQ_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>
#include "lq_cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/// row[0, n) ← softmax(row[0, n)) (max-subtracted), in place.
void lq_softmax_level(lq_level level, float *row, int64_t n);
void lq_softmax(float *row, int64_t n);

/// log Σ exp(row[i]) over [0, n), computed as max + log Σ exp(row[i] − max).
double lq_logsumexp_level(lq_level level, const float *row, int64_t n);
double lq_logsumexp(const float *row, int64_t n);

/// g[i] ← silu(g[i]) · u[i] = g / (1 + e^−g) · u.
void lq_silu_mul_level(lq_level level, float *g, const float *u, int64_t n);
void lq_silu_mul(float *g, const float *u, int64_t n);

/// Backward of m = silu(g)·u: du[i] = dm[i]·silu(g[i]), dg[i] = dm[i]·u[i]·σ(g[i])·(1 + g[i]·(1 − σ(g[i]))).
void lq_silu_mul_backward_level(lq_level level, const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n);
void lq_silu_mul_backward(const float *dm, const float *g, const float *u, float *dg, float *du, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
