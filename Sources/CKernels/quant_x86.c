// AVX2 + FMA NormalFloat kernels. Each group of 8 codes is read as one big-endian word, the 8
// indices come out of one variable shift, and the codebook lookup is a lane permute (≤ 8 codes),
// two permutes and a blend (16 codes) or a gather (256 codes).
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_impl.h"

#define LQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/// The big-endian word holding codes [8g, 8g + 8) of a packed b-bit stream (b ∈ {2, 3, 4}).
static inline uint32_t group_word(const uint8_t *p, int bits, int64_t g) {
    switch (bits) {
        case 4: { uint32_t w; memcpy(&w, p + 4 * g, 4); return __builtin_bswap32(w); }
        case 3: { const uint8_t *q = p + 3 * g; return ((uint32_t)q[0] << 16) | ((uint32_t)q[1] << 8) | q[2]; }
        default: { uint16_t w; memcpy(&w, p + 2 * g, 2); return __builtin_bswap16(w); }
    }
}

typedef struct {
    __m256i shifts, mask;
    __m256 lo, hi;  // codebook entries 0-7 and 8-15
    int bits;
} decoder;

LQ_AVX2 static inline decoder make_decoder(const lq_qtensor *t) {
    decoder d;
    int b = t->format.bits;
    d.bits = b;
    d.shifts = _mm256_setr_epi32(7 * b, 6 * b, 5 * b, 4 * b, 3 * b, 2 * b, b, 0);
    d.mask = _mm256_set1_epi32((1 << (b < 8 ? b : 8)) - 1);
    float lo[8] = {0}, hi[8] = {0};
    int n = b >= 8 ? 0 : 1 << b;
    for (int i = 0; i < n && i < 8; i++) lo[i] = t->codebook[i];
    for (int i = 8; i < n && i < 16; i++) hi[i - 8] = t->codebook[i];
    d.lo = _mm256_loadu_ps(lo);
    d.hi = _mm256_loadu_ps(hi);
    return d;
}

/// Values of codes [8g, 8g + 8).
LQ_AVX2 static inline __m256 decode8(const decoder *d, const lq_qtensor *t, int64_t g) {
    if (d->bits == 8) {
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(t->codes + 8 * g)));
        return _mm256_i32gather_ps(t->codebook, idx, 4);
    }
    __m256i w = _mm256_set1_epi32((int)group_word(t->codes, d->bits, g));
    __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(w, d->shifts), d->mask);
    if (d->bits < 4) return _mm256_permutevar8x32_ps(d->lo, idx);
    __m256 a = _mm256_permutevar8x32_ps(d->lo, idx);
    __m256 b = _mm256_permutevar8x32_ps(d->hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

enum { SCALE_BATCH = 256 };

/// LQ-LoRA integer block scales eight at a time: _mm256_div_ps is an IEEE division, so the values
/// equal the scalar reference's, and blocks of 16 values no longer pay a scalar division each.
LQ_AVX2 static int64_t uint_scales_avx2(const lq_qtensor *t, int64_t b, int64_t count, float step, float *out) {
    const int bits = t->format.scale_bits;
    const __m256 vstep = _mm256_set1_ps(step), voffset = _mm256_set1_ps(t->scale_offset);
    int64_t k = 0;
    for (; k + 8 <= count; k += 8) {
        __m256i q;
        if (bits == 8) {
            q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(t->scale_codes + b + k)));
        } else {
            uint32_t c[8];
            for (int j = 0; j < 8; j++) c[j] = lq_code_at(t->scale_codes, bits, b + k + j);
            q = _mm256_loadu_si256((const __m256i *)c);
        }
        _mm256_storeu_ps(out + k, _mm256_add_ps(_mm256_div_ps(_mm256_cvtepi32_ps(q), vstep), voffset));
    }
    return k;
}

LQ_AVX2 void lq_block_scales_avx2(const lq_qtensor *t, int64_t first, int64_t count, float *out) {
    lq_block_scales_with(t, first, count, out, uint_scales_avx2);
}

LQ_AVX2 void lq_dequantize_avx2(const lq_qtensor *t, int64_t start, int64_t count, float *out) {
    const int64_t bs = t->format.block_size;
    if (bs % 8 != 0) {  // blocks do not start on 8-code groups: the reference path
        lq_dequantize_scalar(t, start, count, out);
        return;
    }
    int64_t i = start, end = start + count;
    // Scalar up to the first block boundary (a multiple of 8, as the block size is).
    int64_t head_end = ((i + bs - 1) / bs) * bs;
    if (head_end > end) head_end = end;
    if (head_end > i) {
        lq_dequantize_scalar(t, i, head_end - i, out);
        i = head_end;
    }
    const decoder d = make_decoder(t);
    float scales[SCALE_BATCH];
    while (end - i >= bs) {
        int64_t b0 = i / bs;
        int64_t nb = (end - i) / bs;
        if (nb > SCALE_BATCH) nb = SCALE_BATCH;
        lq_block_scales_avx2(t, b0, nb, scales);
        for (int64_t k = 0; k < nb; k++, i += bs) {
            __m256 s = _mm256_set1_ps(scales[k]);
            for (int64_t j = 0; j < bs; j += 8) {
                _mm256_storeu_ps(out + (i - start) + j, _mm256_mul_ps(decode8(&d, t, (i + j) >> 3), s));
            }
        }
    }
    if (i < end) lq_dequantize_scalar(t, i, end - i, out + (i - start));
}


LQ_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// NF4 GEMV core: 64 weights (32 bytes) at a time. The codebook is split into four byte planes
/// looked up with vpshufb and re-interleaved into floats, which leaves the 64 values in a fixed
/// permuted order; x is permuted the same way once per call (see nf4_slot_element).
typedef struct {
    __m256i plane[4];
} nf4_tables;

LQ_AVX2 static inline nf4_tables make_nf4_tables(const float *codebook) {
    nf4_tables t;
    uint8_t bytes[4][32];
    for (int c = 0; c < 16; c++) {
        uint32_t u;
        memcpy(&u, codebook + c, 4);
        for (int p = 0; p < 4; p++) bytes[p][c] = bytes[p][c + 16] = (uint8_t)(u >> (8 * p));
    }
    for (int p = 0; p < 4; p++) t.plane[p] = _mm256_loadu_si256((const __m256i *)bytes[p]);
    return t;
}

/// Element (0..63) of a 64-weight group that decoded slot s (0..63) holds: slot = (half·4 + r)·8 + j,
/// where half 0 holds the high nibbles (even elements), r the register, j the lane.
static inline int nf4_slot_element(int s) {
    int half = s / 32, r = (s / 8) % 4, j = s % 8;
    int k = j < 4 ? 4 * r + j : 16 + 4 * r + (j - 4);  // byte within the 32-byte group
    return 2 * k + half;
}

/// The 8-float registers of one nibble plane: out[r] holds slots r·8 .. r·8+7 of that half.
LQ_AVX2 static inline void nf4_decode_half(const nf4_tables *t, __m256i idx, __m256 out[4]) {
    __m256i b0 = _mm256_shuffle_epi8(t->plane[0], idx), b1 = _mm256_shuffle_epi8(t->plane[1], idx);
    __m256i b2 = _mm256_shuffle_epi8(t->plane[2], idx), b3 = _mm256_shuffle_epi8(t->plane[3], idx);
    __m256i w01l = _mm256_unpacklo_epi8(b0, b1), w01h = _mm256_unpackhi_epi8(b0, b1);
    __m256i w23l = _mm256_unpacklo_epi8(b2, b3), w23h = _mm256_unpackhi_epi8(b2, b3);
    out[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(w01l, w23l));
    out[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(w01l, w23l));
    out[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(w01h, w23h));
    out[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(w01h, w23h));
}

/// Rows [r0, r1) of an NF4 matrix with cols % 64 == 0 and block size 16, 32 or a multiple of 64.
LQ_AVX2 static void gemv_nf4_avx2(const lq_qtensor *t, int64_t cols, int64_t r0, int64_t r1, const float *x, float *y) {
    const int64_t bs = t->format.block_size;
    const nf4_tables tables = make_nf4_tables(t->codebook);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    float stack_xp[4096];
    float *xp = cols <= 4096 ? stack_xp : (float *)malloc((size_t)cols * sizeof(float));
    for (int64_t g = 0; g < cols; g += 64) {
        for (int s = 0; s < 64; s++) xp[g + s] = x[g + nf4_slot_element(s)];
    }
    const int64_t groups = cols / 64;
    const int64_t blocks_per_row = cols / bs;
    float scales[SCALE_BATCH];
    for (int64_t r = r0; r < r1; r++) {
        __m256 acc = _mm256_setzero_ps();
        const uint8_t *codes = t->codes + r * cols / 2;
        for (int64_t g0 = 0; g0 < groups; g0 += SCALE_BATCH / 4) {
            int64_t g1 = g0 + SCALE_BATCH / 4 < groups ? g0 + SCALE_BATCH / 4 : groups;
            // Scales of the blocks these groups cover (at most 4 per group).
            int64_t b_first = r * blocks_per_row + g0 * 64 / bs;
            int64_t b_count = ((g1 - g0) * 64 + bs - 1) / bs;
            lq_block_scales_avx2(t, b_first, b_count, scales);
            for (int64_t g = g0; g < g1; g++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * g));
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4), lo = _mm256_and_si256(v, low4);
                __m256 f[8];
                nf4_decode_half(&tables, hi, f);
                nf4_decode_half(&tables, lo, f + 4);
                const float *xg = xp + 64 * g;
                __m256 p0 = _mm256_mul_ps(f[0], _mm256_loadu_ps(xg));
                __m256 p1 = _mm256_mul_ps(f[1], _mm256_loadu_ps(xg + 8));
                __m256 q0 = _mm256_mul_ps(f[2], _mm256_loadu_ps(xg + 16));
                __m256 q1 = _mm256_mul_ps(f[3], _mm256_loadu_ps(xg + 24));
                p0 = _mm256_fmadd_ps(f[4], _mm256_loadu_ps(xg + 32), p0);
                p1 = _mm256_fmadd_ps(f[5], _mm256_loadu_ps(xg + 40), p1);
                q0 = _mm256_fmadd_ps(f[6], _mm256_loadu_ps(xg + 48), q0);
                q1 = _mm256_fmadd_ps(f[7], _mm256_loadu_ps(xg + 56), q1);
                // Registers 0-1 hold bytes 0-7 | 16-23 of the group, registers 2-3 bytes 8-15 | 24-31.
                const float *s = scales + (g - g0) * 64 / bs;
                __m256 sp, sq;
                if (bs >= 64) {
                    sp = sq = _mm256_set1_ps(scales[((g - g0) * 64) / bs]);
                } else if (bs == 32) {
                    sp = sq = _mm256_setr_ps(s[0], s[0], s[0], s[0], s[1], s[1], s[1], s[1]);
                } else {  // 16: blocks 0..3 of the group
                    sp = _mm256_setr_ps(s[0], s[0], s[0], s[0], s[2], s[2], s[2], s[2]);
                    sq = _mm256_setr_ps(s[1], s[1], s[1], s[1], s[3], s[3], s[3], s[3]);
                }
                acc = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), sp, acc);
                acc = _mm256_fmadd_ps(_mm256_add_ps(q0, q1), sq, acc);
            }
        }
        y[r] = hsum(acc);
    }
    if (xp != stack_xp) free(xp);
}

/// NF2/NF3 GEMV core: 64 weights at a time. Lane g of one register holds the big-endian code word
/// of codes [8g, 8g + 8) of the group (16 bytes of NF2 or 24 of NF3, byte-shuffled into lanes), so
/// code j of all eight lanes decodes with one shift, one mask and one permute of the ≤ 8-entry
/// codebook. Register j then holds elements 8g + j: x is transposed 8×8 per group once per call.
/// Needs cols % 64 == 0 and block size 16, 32 or a multiple of 64.
LQ_AVX2 static void gemv_lanes_avx2(const lq_qtensor *t, int64_t cols, int64_t r0, int64_t r1, const float *x, float *y) {
    const int bits = t->format.bits;
    const int64_t bs = t->format.block_size;
    const size_t total_bytes = lq_packed_bytes(bits, t->numel);
    float table[8] = {0};
    for (int c = 0; c < (1 << bits); c++) table[c] = t->codebook[c];
    const __m256 codebook = _mm256_loadu_ps(table);
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256i shift[8];
    for (int j = 0; j < 8; j++) shift[j] = _mm256_set1_epi32(bits == 3 ? 21 - 3 * j : 14 - 2 * j);
    // NF3: bytes 3i..3i+2 of each 128-bit half into lane i as a big-endian 24-bit word.
    const __m256i spread3 = _mm256_setr_epi8(2, 1, 0, -1, 5, 4, 3, -1, 8, 7, 6, -1, 11, 10, 9, -1,
                                             2, 1, 0, -1, 5, 4, 3, -1, 8, 7, 6, -1, 11, 10, 9, -1);
    // NF2: swap each byte pair so the zero-extended 16-bit lanes are big-endian words.
    const __m128i swap2 = _mm_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    float stack_xp[4096];
    float *xp = cols <= 4096 ? stack_xp : (float *)malloc((size_t)cols * sizeof(float));
    for (int64_t g = 0; g < cols; g += 64)
        for (int j = 0; j < 8; j++)
            for (int lane = 0; lane < 8; lane++) xp[g + 8 * j + lane] = x[g + 8 * lane + j];
    const int64_t groups = cols / 64, group_bytes = 8 * bits;
    const int64_t blocks_per_row = cols / bs;
    float scales[SCALE_BATCH];
    for (int64_t r = r0; r < r1; r++) {
        __m256 acc = _mm256_setzero_ps();
        const int64_t row_byte = r * cols / 8 * bits;
        for (int64_t g0 = 0; g0 < groups; g0 += SCALE_BATCH / 4) {
            const int64_t g1 = g0 + SCALE_BATCH / 4 < groups ? g0 + SCALE_BATCH / 4 : groups;
            lq_block_scales_avx2(t, r * blocks_per_row + g0 * 64 / bs, ((g1 - g0) * 64 + bs - 1) / bs, scales);
            for (int64_t g = g0; g < g1; g++) {
                const uint8_t *p = t->codes + row_byte + group_bytes * g;
                __m256i words;
                if (bits == 2) {
                    words = _mm256_cvtepu16_epi32(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), swap2));
                } else {
                    // Two 16-byte loads at +0 and +12; the second reads 4 bytes past the group, so
                    // the matrix's last group goes through a padded copy.
                    uint8_t tail[32];
                    if ((size_t)(p - t->codes) + 28 > total_bytes) {
                        memset(tail, 0, sizeof tail);
                        memcpy(tail, p, 24);
                        p = tail;
                    }
                    words = _mm256_shuffle_epi8(_mm256_loadu2_m128i((const __m128i *)(p + 12), (const __m128i *)p), spread3);
                }
                const float *xg = xp + 64 * g;
                __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
                for (int j = 0; j < 8; j += 2) {
                    __m256 w0 = _mm256_permutevar8x32_ps(codebook, _mm256_and_si256(_mm256_srlv_epi32(words, shift[j]), mask));
                    __m256 w1 = _mm256_permutevar8x32_ps(codebook, _mm256_and_si256(_mm256_srlv_epi32(words, shift[j + 1]), mask));
                    p0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xg + 8 * j), p0);
                    p1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xg + 8 * j + 8), p1);
                }
                // Lane g covers elements 8g..8g+7 of the group: one block each.
                const float *s = scales + (g - g0) * 64 / bs;
                __m256 sv;
                if (bs >= 64) sv = _mm256_set1_ps(scales[((g - g0) * 64) / bs]);
                else if (bs == 32) sv = _mm256_setr_ps(s[0], s[0], s[0], s[0], s[1], s[1], s[1], s[1]);
                else sv = _mm256_setr_ps(s[0], s[0], s[1], s[1], s[2], s[2], s[3], s[3]);
                acc = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), sv, acc);
            }
        }
        y[r] = hsum(acc);
    }
    if (xp != stack_xp) free(xp);
}

LQ_AVX2 void lq_gemv_avx2(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end,
                          const float *x, float *y) {
    const int64_t bs = t->format.block_size;
    if (cols % bs != 0 || bs % 8 != 0) {  // blocks straddle rows or 8-code groups: rare, take the reference path
        lq_gemv_scalar(t, cols, row_begin, row_end, x, y);
        return;
    }
    if (t->format.bits == 4 && cols % 64 == 0 && (bs == 16 || bs == 32 || bs % 64 == 0)) {
        gemv_nf4_avx2(t, cols, row_begin, row_end, x, y);
        return;
    }
    if ((t->format.bits == 2 || t->format.bits == 3) && cols % 64 == 0 && (bs == 16 || bs == 32 || bs % 64 == 0)) {
        gemv_lanes_avx2(t, cols, row_begin, row_end, x, y);
        return;
    }
    const decoder d = make_decoder(t);
    const int64_t blocks_per_row = cols / bs;
    float scales[SCALE_BATCH];
    for (int64_t r = row_begin; r < row_end; r++) {
        __m256 acc = _mm256_setzero_ps();
        int64_t first_block = r * blocks_per_row;
        for (int64_t kb = 0; kb < blocks_per_row; kb += SCALE_BATCH) {
            int64_t nb = blocks_per_row - kb < SCALE_BATCH ? blocks_per_row - kb : SCALE_BATCH;
            lq_block_scales_avx2(t, first_block + kb, nb, scales);
            for (int64_t k = 0; k < nb; k++) {
                int64_t col = (kb + k) * bs;
                int64_t g = (r * cols + col) >> 3;
                __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
                int64_t j = 0;
                for (; j + 16 <= bs; j += 16, g += 2) {
                    p0 = _mm256_fmadd_ps(decode8(&d, t, g), _mm256_loadu_ps(x + col + j), p0);
                    p1 = _mm256_fmadd_ps(decode8(&d, t, g + 1), _mm256_loadu_ps(x + col + j + 8), p1);
                }
                for (; j < bs; j += 8, g++) p0 = _mm256_fmadd_ps(decode8(&d, t, g), _mm256_loadu_ps(x + col + j), p0);
                acc = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), _mm256_set1_ps(scales[k]), acc);
            }
        }
        y[r] = hsum(acc);
    }
}

/// Bins over [−1, 1] for codes of more than 16 values: bin(v) = trunc((clamp(v, −1, 1) + 1) · 2048).
/// The bin is monotone in v, so a value in bin k lies above every midpoint of an earlier bin and
/// below every midpoint of a later one: its code is first[k] plus how many of bin k's own (at most
/// `most`) midpoints lie below it. Exact, as the scalar binary search is.
enum { ERROR_BINS = 4096 };
typedef struct {
    int32_t first[ERROR_BINS];
    float padded[256 + 16];  // the midpoints, then +inf: compares past the last bin's are false
    int most;
} code_bins;

static int error_bin(float v) {
    v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    int k = (int)((v + 1.0f) * 2048.0f);
    return k > ERROR_BINS - 1 ? ERROR_BINS - 1 : k;
}

static void make_code_bins(code_bins *c, const float *midpoints, int n_mid) {
    int counts[ERROR_BINS] = {0};
    for (int j = 0; j < n_mid; j++) counts[error_bin(midpoints[j])]++;
    c->most = 0;
    for (int k = 0, below = 0; k < ERROR_BINS; k++) {
        c->first[k] = below;
        below += counts[k];
        if (counts[k] > c->most) c->most = counts[k];
    }
    for (int j = 0; j < 256 + 16; j++) c->padded[j] = j < n_mid ? midpoints[j] : __builtin_inff();
}

/// lq_block_error_scalar eight elements at a time: the same division, the same code (a count of
/// midpoints below v for up to 16 codes; for more, the code bins above, or the scalar's binary
/// search lane by lane where a bin holds over 8 midpoints), the same products, each element's
/// squared error added into its own lane in double.
LQ_AVX2 double lq_block_error_avx2(const float *w, const float *fisher, int64_t start, int64_t count, int32_t block_size,
                                   const float *scales, const float *midpoints, const float *codebook, int bits) {
    const int n_mid = (1 << bits) - 1;
    __m256 mid[15];
    // Up to 16 codes the codebook sits in two registers, looked up by permutes rather than a
    // gather (several times slower on the cores measured, and it was a quarter of the loop).
    __m256 book_lo = _mm256_setzero_ps(), book_hi = _mm256_setzero_ps();
    if (bits <= 4) {
        for (int j = 0; j < n_mid; j++) mid[j] = _mm256_set1_ps(midpoints[j]);
        float book[16] = {0};
        for (int j = 0; j <= n_mid; j++) book[j] = codebook[j];
        book_lo = _mm256_loadu_ps(book);
        book_hi = _mm256_loadu_ps(book + 8);
    }
    const __m256i seven = _mm256_set1_epi32(7);
    code_bins *bins = NULL;
    if (bits > 4) {
        bins = malloc(sizeof *bins);
        make_code_bins(bins, midpoints, n_mid);
        if (bins->most > 8) { free(bins); bins = NULL; }
    }
    const __m256 minus_one = _mm256_set1_ps(-1.0f), plus_one = _mm256_set1_ps(1.0f), bin_scale = _mm256_set1_ps(2048.0f);
    const __m256i last_bin = _mm256_set1_epi32(ERROR_BINS - 1);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    const int64_t end = start + (count & ~(int64_t)7);
    for (int64_t i = start; i < end; i += 8) {
        const __m256 s = _mm256_set1_ps(scales[i / block_size]);  // blocks hold whole groups of 8
        const __m256 x = _mm256_loadu_ps(w + i);
        __m256 v = _mm256_div_ps(x, s);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN (0/0) → 0
        __m256i code;
        if (bits <= 4) {
            code = _mm256_setzero_si256();
            for (int j = 0; j < n_mid; j++)  // each true compare is −1
                code = _mm256_sub_epi32(code, _mm256_castps_si256(_mm256_cmp_ps(mid[j], v, _CMP_LT_OQ)));
        } else if (bins) {
            const __m256 clamped = _mm256_min_ps(_mm256_max_ps(v, minus_one), plus_one);
            const __m256i k = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_mul_ps(_mm256_add_ps(clamped, plus_one), bin_scale)), last_bin);
            const __m256i first = _mm256_i32gather_epi32(bins->first, k, 4);
            code = first;
            for (int t = 0; t < bins->most; t++) {
                const __m256 m = _mm256_i32gather_ps(bins->padded, _mm256_add_epi32(first, _mm256_set1_epi32(t)), 4);
                code = _mm256_sub_epi32(code, _mm256_castps_si256(_mm256_cmp_ps(m, v, _CMP_LT_OQ)));
            }
        } else {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(n_mid);
            const __m256i one = _mm256_set1_epi32(1);
            for (int step = 0; step < bits; step++) {
                const __m256i m = _mm256_srli_epi32(_mm256_add_epi32(lo, hi), 1);
                const __m256i below = _mm256_castps_si256(_mm256_cmp_ps(_mm256_i32gather_ps(midpoints, m, 4), v, _CMP_LT_OQ));
                lo = _mm256_blendv_epi8(lo, _mm256_add_epi32(m, one), below);
                hi = _mm256_blendv_epi8(m, hi, below);
            }
            code = lo;
        }
        __m256 value;
        if (bits <= 4) {
            const __m256 lo = _mm256_permutevar8x32_ps(book_lo, code), hi = _mm256_permutevar8x32_ps(book_hi, code);
            value = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(code, seven)));
        } else {
            value = _mm256_i32gather_ps(codebook, code, 4);
        }
        const __m256 d = _mm256_mul_ps(value, s);
        const __m256d e_lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(d)));
        const __m256d e_hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)));
        if (fisher) {
            const __m256 f = _mm256_loadu_ps(fisher + i);
            acc_lo = _mm256_add_pd(acc_lo, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f)), e_lo), e_lo));
            acc_hi = _mm256_add_pd(acc_hi, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), e_hi), e_hi));
        } else {
            acc_lo = _mm256_add_pd(acc_lo, _mm256_mul_pd(e_lo, e_lo));
            acc_hi = _mm256_add_pd(acc_hi, _mm256_mul_pd(e_hi, e_hi));
        }
    }
    double acc[8];
    _mm256_storeu_pd(acc, acc_lo);
    _mm256_storeu_pd(acc + 4, acc_hi);
    for (int64_t i = end; i < start + count; i++)  // a tail shorter than 8, each element in its lane
        acc[(i - start) & 7] += lq_block_error_element(w, fisher, i, scales[i / block_size], midpoints, codebook, bits);
    free(bins);
    return lq_lane_total(acc);
}
#endif
