// Scalar references of the decoder operations the GPU runs between its matrix products (lq_cuda.h):
// the oracle of the CUDA check and the kernels of the tests' host emulation of the GPU library.
// They compute what LlamaModel's CPU forward pass computes, in the same order of operations.
#ifndef LQ_DEVICE_OPS_H
#define LQ_DEVICE_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Causal grouped-query attention of `length` new positions per sequence after `start` cached ones.
typedef struct {
    int64_t batch, length, start;
    /// Rows per sequence in the keys/values buffers (a KV cache's capacity, or `length` without one).
    int64_t capacity;
    int64_t heads, kv_heads, head_dim;
    /// Sliding window in positions (a query attends to the last `window` positions), 0 for none.
    int64_t window;
    float scale;
} lq_attention_shape;

/// out[i, :] = weight · (x[i, :] · 1/sqrt(mean(x[i, :]²) + eps)) for n rows of `width`.
void lq_ref_rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out);
/// Rotate-half RoPE in place on x [batch·length, heads·head_dim]; row t of a sequence is position
/// start + t; cos/sin [positions, head_dim/2].
void lq_ref_rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start, int64_t heads,
                 int64_t head_dim);
/// out [batch·length, heads·head_dim] = softmax(scale · q·kᵀ, causal and sliding-window mask)·v per
/// head; q [batch·length, heads·head_dim], keys/values [batch, capacity, kv_heads·head_dim].
void lq_ref_attention(const float *q, const float *keys, const float *values, const lq_attention_shape *s, float *out);

/// out[i] = logsumexp(logits[i, :]) − logits[i, targets[i]] for n rows of `vocab`: each row's
/// negative log-likelihood, the maximum subtracted and the exponentials summed in double.
void lq_ref_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out);

#ifdef __cplusplus
}
#endif
#endif
