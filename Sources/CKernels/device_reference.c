// Scalar references of the GPU's decoder operations (lq_device_ops.h).
#include <math.h>
#include <stdlib.h>

#include "lq_activations.h"
#include "lq_device_ops.h"

void lq_ref_rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *src = x + i * width;
        float ss = 0;
        for (int64_t j = 0; j < width; j++) ss += src[j] * src[j];
        const float r = 1 / sqrtf(ss / (float)width + eps);
        for (int64_t j = 0; j < width; j++) out[i * width + j] = weight[j] * (src[j] * r);
    }
}

void lq_ref_rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start, int64_t heads,
                 int64_t head_dim) {
    const int64_t half = head_dim / 2, width = heads * head_dim;
    for (int64_t row = 0; row < batch * length; row++) {
        const int64_t position = start + row % length;
        const float *c = cos + position * half, *s = sin + position * half;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + row * width + h * head_dim;
            for (int64_t i = 0; i < half; i++) {
                const float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c[i] + (-x2) * s[i];
                v[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

void lq_ref_attention(const float *q, const float *keys, const float *values, const lq_attention_shape *s, float *out) {
    const int64_t hd = s->head_dim, group = s->heads / s->kv_heads;
    const int64_t q_width = s->heads * hd, kv_width = s->kv_heads * hd;
    float *p = malloc(sizeof(float) * (size_t)(s->start + s->length));
    for (int64_t b = 0; b < s->batch; b++) {
        for (int64_t t = 0; t < s->length; t++) {
            const int64_t row = b * s->length + t, last = s->start + t;
            const int64_t first = s->window > 0 && last - s->window + 1 > 0 ? last - s->window + 1 : 0;
            for (int64_t h = 0; h < s->heads; h++) {
                const float *qh = q + row * q_width + h * hd;
                const float *k = keys + b * s->capacity * kv_width + (h / group) * hd;
                const float *v = values + b * s->capacity * kv_width + (h / group) * hd;
                for (int64_t j = first; j <= last; j++) {
                    float dot = 0;
                    for (int64_t d = 0; d < hd; d++) dot += qh[d] * k[j * kv_width + d];
                    p[j - first] = s->scale * dot;
                }
                lq_softmax(p, last - first + 1);
                float *o = out + row * q_width + h * hd;
                for (int64_t d = 0; d < hd; d++) o[d] = 0;
                for (int64_t j = first; j <= last; j++)
                    for (int64_t d = 0; d < hd; d++) o[d] += p[j - first] * v[j * kv_width + d];
            }
        }
    }
    free(p);
}

void lq_ref_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * vocab;
        out[i] = lq_logsumexp_level(LQ_LEVEL_SCALAR, row, vocab) - (double)row[targets[i]];
    }
}

void lq_ref_attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *s,
                            int64_t splits, float *out) {
    const int64_t hd = s->head_dim, group = s->heads / s->kv_heads;
    const int64_t q_width = s->heads * hd, kv_width = s->kv_heads * hd;
    float *acc = malloc(sizeof(float) * (size_t)hd);
    for (int64_t row = 0; row < s->batch * s->length; row++) {
        const int64_t b = row / s->length, last = s->start + row % s->length;
        const int64_t first = s->window > 0 && last - s->window + 1 > 0 ? last - s->window + 1 : 0;
        for (int64_t h = 0; h < s->heads; h++) {
            const float *qh = q + row * q_width + h * hd;
            const float *k = keys + b * s->capacity * kv_width + (h / group) * hd;
            const float *v = values + b * s->capacity * kv_width + (h / group) * hd;
            float *o = out + row * q_width + h * hd;
            // The merge so far: its maximum M, Σ l·exp(m − M) and Σ acc·exp(m − M) over the ranges seen.
            float M = -INFINITY, L = 0;
            for (int64_t d = 0; d < hd; d++) o[d] = 0;
            for (int64_t c = 0; c < splits; c++) {
                int64_t lo, hi;
                lq_attention_split_range(first, last, splits, c, &lo, &hi);
                if (lo == hi) continue;  // an empty range weighs nothing
                float m = -INFINITY, l = 0;
                for (int64_t j = lo; j < hi; j++) {
                    float dot = 0;
                    for (int64_t d = 0; d < hd; d++) dot += qh[d] * k[j * kv_width + d];
                    m = fmaxf(m, s->scale * dot);
                }
                for (int64_t d = 0; d < hd; d++) acc[d] = 0;
                for (int64_t j = lo; j < hi; j++) {
                    float dot = 0;
                    for (int64_t d = 0; d < hd; d++) dot += qh[d] * k[j * kv_width + d];
                    const float p = expf(s->scale * dot - m);
                    l += p;
                    for (int64_t d = 0; d < hd; d++) acc[d] += p * v[j * kv_width + d];
                }
                const float M_new = fmaxf(M, m), old = expf(M - M_new), w = expf(m - M_new);
                L = L * old + l * w;
                for (int64_t d = 0; d < hd; d++) o[d] = o[d] * old + acc[d] * w;
                M = M_new;
            }
            for (int64_t d = 0; d < hd; d++) o[d] /= L;
        }
    }
    free(acc);
}
