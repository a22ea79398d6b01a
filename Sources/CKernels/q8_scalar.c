// Scalar reference for int8 activations against NormalFloat weights (lq_q8.h): the int8 codebook,
// the Q8_0-style quantizer and the product, for any block size and row length.
#include <stdlib.h>
#include <string.h>

#include "q8_impl.h"

int64_t lq_q8_blocks(int64_t cols) { return (cols + LQ_Q8_BLOCK - 1) / LQ_Q8_BLOCK; }

int64_t lq_q8_row_bytes(int64_t cols) { return 64 * ((lq_q8_blocks(cols) + 1) / 2); }

int lq_q8_element(int bits, int slot) {
    const int h = slot / 32, b = (slot % 32) / 16, i = slot % 16;  // part, block of the pair, index in the part
    if (bits == 4) return 32 * b + 2 * i + h;
    return 32 * b + 8 * (i / 4) + 4 * h + i % 4;
}

void lq_q8_codebook_make(const float *codebook, int bits, lq_q8_codebook *out) {
    memset(out, 0, sizeof *out);
    const int n = 1 << bits;
    double m = 0;
    for (int k = 0; k < n; k++) m = fmax(m, fabs((double)codebook[k]));
    if (!(m > 0)) return;
    // s = i / 256 from the largest candidate down; a strict improvement is needed to move, so ties
    // keep the larger s.
    int best_i = 0;
    double best = INFINITY;
    for (int i = 127 * 256 + 127; i >= 64 * 256; i--) {
        const double s = i / 256.0;
        double e = 0;
        for (int k = 0; k < n; k++) {
            const double r = (double)codebook[k] - nearbyint((double)codebook[k] / m * s) * (m / s);
            e += r * r;
        }
        if (e < best) { best = e; best_i = i; }
    }
    const double s = best_i / 256.0;
    for (int k = 0; k < n; k++) out->values[k] = (int8_t)nearbyint((double)codebook[k] / m * s);
    out->scale = (float)(m / s);
}

void lq_q8_quantize_scalar(int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    const int64_t nb = lq_q8_blocks(cols);
    memset(q, 0, (size_t)lq_q8_row_bytes(cols));
    for (int64_t j = 0; j < nb; j++) {
        const float *xb = x + LQ_Q8_BLOCK * j;
        const int64_t n = cols - LQ_Q8_BLOCK * j < LQ_Q8_BLOCK ? cols - LQ_Q8_BLOCK * j : LQ_Q8_BLOCK;
        float amax = 0;
        for (int64_t e = 0; e < n; e++) amax = fmaxf(amax, fabsf(xb[e]));
        const float dj = amax / 127.0f;
        d[j] = dj;
        if (dj == 0.0f) continue;
        int8_t *pair = q + 64 * (j / 2);
        for (int64_t e = 0; e < n; e++) pair[lq_q8_slot(bits, (int)(32 * (j % 2) + e))] = lq_q8_round(xb[e] / dj);
    }
}

void lq_q8_quantize_tail(int bits, const float *x, int64_t cols, int8_t *q, float *d) {
    const int64_t full = cols / LQ_Q8_BLOCK, nb = lq_q8_blocks(cols);
    if (full == nb) return;
    const int64_t first = 2 * (full / 2);
    int8_t pair[64];
    float dd[2];
    lq_q8_quantize_scalar(bits, x + LQ_Q8_BLOCK * first, cols - LQ_Q8_BLOCK * first, pair, dd);
    memcpy(q + 64 * (full / 2), pair, 64);
    for (int64_t k = first; k < nb; k++) d[k] = dd[k - first];
}

int64_t lq_q8_quantize_residual(int bits, const float *x, int64_t cols, float tau, const int8_t *q, const float *d,
                                int8_t *q2, float *d2) {
    const int64_t nb = lq_q8_blocks(cols);
    memset(q2, 0, (size_t)lq_q8_row_bytes(cols));
    float sum = 0;  // in block order
    for (int64_t j = 0; j < nb; j++) sum += d[j];
    const float limit = tau * (sum / (float)nb);
    int64_t flagged = 0;
    for (int64_t j = 0; j < nb; j++) {
        d2[j] = 0;
        if (!(d[j] > limit) || !(d[j] > 0)) continue;
        const float *xb = x + LQ_Q8_BLOCK * j;
        const int64_t n = cols - LQ_Q8_BLOCK * j < LQ_Q8_BLOCK ? cols - LQ_Q8_BLOCK * j : LQ_Q8_BLOCK;
        float r[LQ_Q8_BLOCK], amax = 0;
        for (int64_t e = 0; e < n; e++) {
            const int slot = lq_q8_slot(bits, (int)(32 * (j % 2) + e));
            r[e] = xb[e] - d[j] * (float)q[64 * (j / 2) + slot];  // fp32: the product rounded, then the difference
            amax = fmaxf(amax, fabsf(r[e]));
        }
        const float dj = amax / 127.0f;
        if (!(dj > 0)) continue;  // the block was exact already
        d2[j] = dj;
        flagged++;
        int8_t *pair = q2 + 64 * (j / 2);
        for (int64_t e = 0; e < n; e++) pair[lq_q8_slot(bits, (int)(32 * (j % 2) + e))] = lq_q8_round(r[e] / dj);
    }
    return flagged;
}

/// Adds block j's octet terms Σ C · q (pair: the block's pair of int8 activations, dj its scale) into
/// the row's lanes, one fma per octet and weight block, in order.
static void octet_terms(const lq_qtensor *t, const int8_t *w, int64_t row, int64_t j, int64_t n, const int8_t *pair, float dj,
                        float acc[8]) {
    const int bits = t->format.bits;
    const int64_t bs = t->format.block_size;
    for (int o = 0; o < 4; o++) {
        float *lane = acc + 4 * (j % 2) + o;
        int64_t block = -1;  // the octet's elements in order, so weight blocks come in order
        int32_t isum = 0;
        for (int64_t e = 8 * o; e < 8 * o + 8 && e < n; e++) {
            const int64_t b = (row + LQ_Q8_BLOCK * j + e) / bs;
            if (b != block) {
                if (block >= 0) {
                    float sb;
                    lq_block_scales(t, block, 1, &sb);
                    *lane = fmaf((float)isum, sb * dj, *lane);
                }
                block = b;
                isum = 0;
            }
            isum += (int32_t)w[LQ_Q8_BLOCK * j + e] * pair[lq_q8_slot(bits, (int)(32 * (j % 2) + e))];
        }
        if (block >= 0) {
            float sb;
            lq_block_scales(t, block, 1, &sb);
            *lane = fmaf((float)isum, sb * dj, *lane);
        }
    }
}

void lq_q8_gemv_scalar(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                       int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy) {
    const int bits = t->format.bits;
    const int64_t nb = lq_q8_blocks(cols), stride = lq_q8_row_bytes(cols);
    int8_t *w = malloc((size_t)cols + 1);
    for (int64_t r = row_begin; r < row_end; r++) {
        const int64_t row = r * cols;
        for (int64_t c = 0; c < cols; c++) w[c] = codebook->values[lq_get_code(t->codes, bits, row + c)];
        for (int64_t i = 0; i < x->count; i++) {
            float acc[8] = {0}, acc2[8] = {0};  // x's terms; the residual's, in its own lanes
            int flagged = 0;
            for (int64_t j = 0; j < nb; j++) {
                const int64_t n = cols - LQ_Q8_BLOCK * j < LQ_Q8_BLOCK ? cols - LQ_Q8_BLOCK * j : LQ_Q8_BLOCK;
                const int64_t at = i * stride + 64 * (j / 2);
                octet_terms(t, w, row, j, n, x->q + at, x->d[i * nb + j], acc);
                if (x->q2 && x->d2[i * nb + j] != 0.0f) {
                    octet_terms(t, w, row, j, n, x->q2 + at, x->d2[i * nb + j], acc2);
                    flagged = 1;
                }
            }
            float total = lq_q8_lane_total(acc);
            if (flagged) total = total + lq_q8_lane_total(acc2);
            y[i * ldy + r] = total * codebook->scale;
        }
    }
    free(w);
}
