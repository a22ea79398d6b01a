// Scalar references of the decoder operations the GPU runs between its matrix products (lq_cuda.h):
// the oracle of the CUDA check and the kernels of the tests' host emulation of the GPU library.
// They compute what LlamaModel's CPU forward pass computes, in the same order of operations.
#ifndef LQ_DEVICE_OPS_H
#define LQ_DEVICE_OPS_H

#include <stdint.h>

#include "lq_layout.h"

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

// ---- Split-K attention: decoding over a long cache ----
// A decoding step has batch × heads (query row, head) pairs, too few to fill a GPU when each walks
// its keys alone. The visible keys of each pair are then cut into `splits` contiguous ranges, each
// range reduced to (max score m, Σ exp(score − m), Σ exp(score − m)·v), and the ranges merged.

/// Fewest keys a range gets, and the (row, head) pairs × ranges a launch aims for (a few waves of
/// a 132-multiprocessor GPU).
#define LQ_ATTENTION_SPLIT_MIN_KEYS 256
#define LQ_ATTENTION_SPLIT_TARGET_BLOCKS 512

/// The ranges lq_cuda_attention cuts each pair's keys into: 1 unless the pairs are too few and the
/// keys many. A function of the shape alone, so a result never depends on the device.
static inline int64_t lq_attention_splits(const lq_attention_shape *s) {
    const int64_t pairs = s->batch * s->length * s->heads;
    int64_t keys = s->start + s->length;  // the most any query row sees
    if (s->window > 0 && s->window < keys) keys = s->window;
    if (pairs <= 0 || keys <= 0) return 1;
    int64_t by_keys = keys / LQ_ATTENTION_SPLIT_MIN_KEYS, by_pairs = LQ_ATTENTION_SPLIT_TARGET_BLOCKS / pairs;
    const int64_t splits = by_keys < by_pairs ? by_keys : by_pairs;
    return splits > 1 ? splits : 1;
}

/// Range `c` of `splits` over the visible keys [first, last]: [*lo, *hi), empty for a range past
/// the end (a pair that sees fewer keys than the launch was split for).
LQ_HD void lq_attention_split_range(int64_t first, int64_t last, int64_t splits, int64_t c, int64_t *lo, int64_t *hi) {
    const int64_t per = (last - first + splits) / splits;  // ceil((last − first + 1) / splits)
    const int64_t a = first + c * per, b = a + per;
    *lo = a < last + 1 ? a : last + 1;
    *hi = b < last + 1 ? b : last + 1;
}

/// lq_ref_attention computed as the GPU's split-K does: each pair's keys in `splits` ranges
/// (lq_attention_split_range), each reduced on its own, then merged in range order.
void lq_ref_attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *s,
                            int64_t splits, float *out);

/// out[i] = logsumexp(logits[i, :]) − logits[i, targets[i]] for n rows of `vocab`: each row's
/// negative log-likelihood, the maximum subtracted and the exponentials summed in double.
void lq_ref_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out);

#ifdef __cplusplus
}
#endif
#endif
