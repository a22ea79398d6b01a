// Internal: the per-level int8-activation kernels that q8_dispatch.c chooses between, and the
// pieces of the arithmetic (lq_q8.h) every level shares.
#ifndef LQ_Q8_IMPL_H
#define LQ_Q8_IMPL_H

#include <math.h>
#include <stdlib.h>

#include "lq_q8.h"

void lq_q8_quantize_scalar(int bits, const float *x, int64_t cols, int8_t *q, float *d);
void lq_q8_gemv_scalar(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                       int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy);
#if defined(__x86_64__)
void lq_q8_quantize_avx2(int bits, const float *x, int64_t cols, int8_t *q, float *d);
void lq_q8_gemv_avx2(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                     int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy);
#endif
#if defined(__aarch64__)
void lq_q8_quantize_neon(int bits, const float *x, int64_t cols, int8_t *q, float *d);
void lq_q8_gemv_neon(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin,
                     int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy);
#endif

/// The SIMD quantizers' end of a row: a short last block, if any, with its pair quantized again by
/// the reference (the same bits for the pair's first block).
void lq_q8_quantize_tail(int bits, const float *x, int64_t cols, int8_t *q, float *d);

/// How the SIMD kernels walk a row's weight block scales, or 0 where they take the scalar path:
/// whole 32-value activation blocks per row, and weight blocks that hold whole octets of them.
enum { LQ_Q8_SCALE_PER16 = 1, LQ_Q8_SCALE_PER32 = 2, LQ_Q8_SCALE_PER64 = 3 };
static inline int lq_q8_scale_mode(const lq_qtensor *t, int64_t cols) {
    const int64_t bs = t->format.block_size;
    if (cols % LQ_Q8_BLOCK != 0) return 0;
    if (bs % 64 == 0 && cols % 64 == 0) return LQ_Q8_SCALE_PER64;  // one scale per pair of blocks
    if (bs % 32 == 0) return LQ_Q8_SCALE_PER32;
    return bs == 16 ? LQ_Q8_SCALE_PER16 : 0;
}

/// The slot (0..63) of a pair that element e (0..63) of the pair goes to (the inverse of lq_q8_element).
static inline int lq_q8_slot(int bits, int e) {
    const int b = e / 32, i = e % 32;  // block of the pair, element within it
    if (bits == 4) return 32 * (i & 1) + 16 * b + i / 2;
    return 32 * ((i / 4) & 1) + 16 * b + 4 * (i / 8) + i % 4;
}

/// An activation's int8 value: x / d rounded half to even, clamped to ±127; NaN gives 0.
static inline int8_t lq_q8_round(float v) {
    if (v != v) return 0;
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    return (int8_t)(int)nearbyintf(v);
}

/// The fixed order in which every level adds a row's eight lane accumulators.
static inline float lq_q8_lane_total(const float acc[8]) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/// The block scales of one row: every weight block its values touch, from its first, plus zeros
/// past the end (the SIMD paths read up to four past a lone last block). On the stack when small.
typedef struct {
    float *scales;
    float stack[512];
} lq_q8_scale_buffer;

static inline float *lq_q8_scales_for(lq_q8_scale_buffer *b, int64_t cols, int64_t block_size) {
    const int64_t need = cols / block_size + 6;
    b->scales = need <= 512 ? b->stack : (float *)malloc(sizeof(float) * (size_t)need);
    return b->scales;
}
static inline void lq_q8_scales_free(lq_q8_scale_buffer *b) {
    if (b->scales != b->stack) free(b->scales);
}

/// Where the rows of a pass stand in the weight blocks: row r's first block and its offset in it,
/// stepped from row to row without a division.
typedef struct {
    int64_t first, pos;
    int64_t blocks_per_row, rest;  // cols = blocks_per_row · bs + rest
} lq_q8_row_walk;

static inline lq_q8_row_walk lq_q8_row_walk_start(int64_t row_start, int64_t cols, int64_t block_size) {
    lq_q8_row_walk w = {row_start / block_size, row_start % block_size, cols / block_size, cols % block_size};
    return w;
}

/// Fills scales[] with the row's weight block scales (cols / bs + 2 blocks, fewer at the end of the
/// matrix, then 4 zeros: every block the row touches and what a lone last block's lanes read past
/// them) through `fill`, the level's lq_block_scales; then steps the walk to the next row.
static inline void lq_q8_row_scales(const lq_qtensor *t, int64_t cols, lq_q8_row_walk *w, int64_t *pos, float *scales,
                                    void (*fill)(const lq_qtensor *, int64_t, int64_t, float *)) {
    const int64_t bs = t->format.block_size, blocks = (t->numel + bs - 1) / bs;
    int64_t count = cols / bs + 2;
    if (count > blocks - w->first) count = blocks - w->first;
    fill(t, w->first, count, scales);
    for (int k = 0; k < 4; k++) scales[count + k] = 0;
    *pos = w->pos;
    w->first += w->blocks_per_row;
    w->pos += w->rest;
    if (w->pos >= bs) w->pos -= bs, w->first++;
}

/// The activation scales d of x's rows (x->d, or the residual's x->d2), each spread over the lanes
/// of its pairs: out[(i · pairs + p) · 8 + l] = d of block 2p + l / 4 (0 for a missing last block).
static inline float *lq_q8_lane_scales(const lq_q8_rows *x, const float *d, int64_t cols) {
    const int64_t nb = lq_q8_blocks(cols), pairs = (nb + 1) / 2;
    float *out = (float *)malloc(sizeof(float) * (size_t)(x->count * pairs * 8 + 1));
    for (int64_t i = 0; i < x->count; i++)
        for (int64_t p = 0; p < pairs; p++)
            for (int l = 0; l < 8; l++) {
                const int64_t j = 2 * p + l / 4;
                out[(i * pairs + p) * 8 + l] = j < nb ? d[i * nb + j] : 0.0f;
            }
    return out;
}

/// Which pairs of x's rows hold a flagged block (d2 ≠ 0): out[i · pairs + p]; NULL without a residual.
static inline uint8_t *lq_q8_pair_flags(const lq_q8_rows *x, int64_t cols) {
    if (!x->q2) return NULL;
    const int64_t nb = lq_q8_blocks(cols), pairs = (nb + 1) / 2;
    uint8_t *out = (uint8_t *)malloc((size_t)(x->count * pairs + 1));
    for (int64_t i = 0; i < x->count; i++)
        for (int64_t p = 0; p < pairs; p++)
            out[i * pairs + p] = x->d2[i * nb + 2 * p] != 0.0f || (2 * p + 1 < nb && x->d2[i * nb + 2 * p + 1] != 0.0f);
    return out;
}

#endif
