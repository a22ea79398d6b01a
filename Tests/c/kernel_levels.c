// Standalone C test of the kernels: every SIMD level against the scalar reference on random data
// of awkward sizes. Runs natively (AVX2 on x86-64) and, cross-compiled, under qemu-aarch64 (NEON),
// where the Swift toolchain is not needed. Built by scripts/test-kernels-c.sh.
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "CKernels.h"

static int passed = 0, failed = 0;
static void check(int ok, const char *what) {
    if (ok) passed++;
    else { failed++; fprintf(stderr, "FAIL: %s\n", what); }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rndf(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; }
static int cmp_float(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return (x > y) - (x < y); }

static void test_conversions(lq_level level) {
    static uint16_t in[65536];
    static float a[65536], b[65536];
    for (int i = 0; i < 65536; i++) in[i] = (uint16_t)i;
    lq_f16_to_f32_level(LQ_LEVEL_SCALAR, in, a, 65536);
    lq_f16_to_f32_level(level, in, b, 65536);
    int ok = 1;
    for (int i = 0; i < 65536; i++) ok &= (isnan(a[i]) && isnan(b[i])) || memcmp(a + i, b + i, 4) == 0;
    check(ok, "f16 -> f32, all patterns");
    lq_bf16_to_f32_level(LQ_LEVEL_SCALAR, in, a, 65536);
    lq_bf16_to_f32_level(level, in, b, 65536);
    check(memcmp(a, b, sizeof a) == 0, "bf16 -> f32, all patterns");
    static uint16_t x[100003], y[100003];
    static float f[100003];
    for (int i = 0; i < 100003; i++) { uint32_t u = rnd() << 16 | rnd(); memcpy(f + i, &u, 4); }
    lq_f32_to_f16_level(LQ_LEVEL_SCALAR, f, x, 100003);
    lq_f32_to_f16_level(level, f, y, 100003);
    ok = 1;
    for (int i = 0; i < 100003; i++) ok &= x[i] == y[i] || (isnan(f[i]) && (x[i] & 0x7c00) == 0x7c00 && (y[i] & 0x7c00) == 0x7c00);
    check(ok, "f32 -> f16, random bits");
    lq_f32_to_bf16_level(LQ_LEVEL_SCALAR, f, x, 100003);
    lq_f32_to_bf16_level(level, f, y, 100003);
    check(memcmp(x, y, sizeof x) == 0, "f32 -> bf16, random bits");
}

/// A matrix of n random codes and block scales in one of the formats, against `codebook`: unpadded
/// buffers, so kernels must not read past them. Not to be copied (the view points into it).
typedef struct {
    uint8_t *codes, *scale_codes;
    float *absmax, *group_absmax, map[256];
    lq_qtensor t;
} random_matrix;

static void random_matrix_make(random_matrix *m, int bits, int block, int kind, int scale_bits, int group, int64_t n,
                               const float *codebook) {
    const int64_t blocks = (n + block - 1) / block, groups = kind == LQ_SCALES_F32 ? 0 : (blocks + group - 1) / group;
    const size_t code_bytes = lq_packed_bytes(bits, n);
    m->codes = malloc(code_bytes);
    for (size_t i = 0; i < code_bytes; i++) m->codes[i] = (uint8_t)rnd();
    m->absmax = malloc(sizeof(float) * blocks);
    m->group_absmax = malloc(sizeof(float) * (groups + 1));
    for (int i = 0; i < 256; i++) m->map[i] = rndf();
    m->scale_codes = calloc(blocks + 8, 1);
    for (int64_t b = 0; b < blocks; b++) {
        m->absmax[b] = 0.01f + (float)(rnd() % 1000) / 1000.0f;
        if (kind == LQ_SCALES_DYNAMIC8) m->scale_codes[b] = (uint8_t)rnd();
        if (kind == LQ_SCALES_UINT) lq_put_code(m->scale_codes, scale_bits, b, rnd() % (1u << scale_bits));
    }
    for (int64_t g = 0; g < groups; g++) m->group_absmax[g] = 0.1f + (float)(rnd() % 1000) / 500.0f;
    m->t = (lq_qtensor){{bits, block, kind, scale_bits, group}, n, m->codes, codebook, m->absmax, m->scale_codes, m->map,
                        m->group_absmax, 0.05f};
}

static void random_matrix_free(random_matrix *m) {
    free(m->codes); free(m->absmax); free(m->group_absmax); free(m->scale_codes);
}

static void test_format(lq_level level, int bits, int block, int kind, int scale_bits, int group, int64_t cols) {
    const int64_t rows = 24;
    const int64_t n = rows * cols;
    int ncodes = 1 << bits;
    float *codebook = malloc(sizeof(float) * ncodes);
    for (int i = 0; i < ncodes; i++) codebook[i] = rndf();
    qsort(codebook, ncodes, sizeof(float), cmp_float);
    random_matrix m;
    random_matrix_make(&m, bits, block, kind, scale_bits, group, n, codebook);
    const lq_qtensor t = m.t;
    char what[160];

    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    const int64_t ranges[][2] = {{0, n}, {5, n - 11}, {block, 2 * block + 3}, {n - 9, 9}};
    for (int r = 0; r < 4; r++) {
        lq_dequantize_level(LQ_LEVEL_SCALAR, &t, ranges[r][0], ranges[r][1], ref);
        lq_dequantize_level(level, &t, ranges[r][0], ranges[r][1], got);
        snprintf(what, sizeof what, "dequantize bits %d block %d kind %d/%d/%d range %lld+%lld", bits, block, kind, scale_bits,
                 group, (long long)ranges[r][0], (long long)ranges[r][1]);
        check(memcmp(ref, got, sizeof(float) * ranges[r][1]) == 0, what);
    }
    float *x = malloc(sizeof(float) * cols), *y0 = malloc(sizeof(float) * rows), *y1 = malloc(sizeof(float) * rows);
    for (int64_t j = 0; j < cols; j++) x[j] = rndf();
    lq_gemv_level(LQ_LEVEL_SCALAR, &t, cols, 0, rows, x, y0);
    lq_gemv_level(level, &t, cols, 0, rows, x, y1);
    lq_dequantize_level(LQ_LEVEL_SCALAR, &t, 0, n, ref);
    int ok = 1;
    for (int64_t r = 0; r < rows; r++) {
        double mag = 0;
        for (int64_t j = 0; j < cols; j++) mag += fabs((double)ref[r * cols + j] * x[j]);
        ok &= fabs((double)y0[r] - y1[r]) <= 1e-5 * mag + 1e-30;
    }
    snprintf(what, sizeof what, "gemv bits %d block %d kind %d/%d/%d cols %lld", bits, block, kind, scale_bits, group, (long long)cols);
    check(ok, what);
    random_matrix_free(&m);
    free(codebook); free(ref); free(got); free(x); free(y0); free(y1);
}

static void test_gemv16(lq_level level) {
    const int64_t widths[] = {1, 7, 8, 33, 100, 576}, rows = 13;
    for (int bf = 0; bf < 2; bf++)
        for (int k = 0; k < 6; k++) {
            const int64_t cols = widths[k];
            uint16_t *w = malloc(sizeof(uint16_t) * rows * cols);  // unpadded: no reads past the end
            float *x = malloc(sizeof(float) * cols), y0[13], y1[13];
            for (int64_t i = 0; i < rows * cols; i++) w[i] = bf ? lq_f32_to_bf16_ref(rndf()) : lq_f32_to_f16_ref(rndf());
            for (int64_t c = 0; c < cols; c++) x[c] = rndf();
            lq_gemv16_level(LQ_LEVEL_SCALAR, bf, w, cols, 0, rows, x, y0);
            lq_gemv16_level(level, bf, w, cols, 0, rows, x, y1);
            int ok = 1;
            for (int64_t r = 0; r < rows; r++) {
                double mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    float v = bf ? lq_bf16_to_f32_ref(w[r * cols + c]) : lq_f16_to_f32_ref(w[r * cols + c]);
                    mag += fabs((double)v * x[c]);
                }
                ok &= fabs((double)y0[r] - y1[r]) <= 1e-6 * mag + 1e-30;
            }
            char what[64];
            snprintf(what, sizeof what, "gemv16 %s cols %lld", bf ? "bf16" : "f16", (long long)cols);
            check(ok, what);
            free(w);
            free(x);
        }
}

// ---- Uniform-integer (GPTQ) matrices: dequantization bit-equal, the GEMV within rounding ----

static void test_uniform(lq_level level) {
    const int64_t widths[] = {8, 20, 100, 576}, groups[] = {8, 32, 64, 128}, rows = 11;
    for (int k = 0; k < 4; k++)
        for (int gi = 0; gi < 4; gi++) {
            const int64_t cols = widths[k], group = groups[gi] < cols ? groups[gi] : cols, ng = (cols + group - 1) / group;
            uint8_t *q = malloc(rows * cols);  // unpadded: no reads past the end
            float *s = malloc(sizeof(float) * ng * rows), *z = malloc(sizeof(float) * ng * rows);
            float *x = malloc(sizeof(float) * cols), *a = malloc(sizeof(float) * rows * cols), *b = malloc(sizeof(float) * rows * cols);
            float y0[11], y1[11];
            for (int64_t i = 0; i < rows * cols; i++) q[i] = (uint8_t)(rnd() % 256);
            for (int64_t i = 0; i < ng * rows; i++) { s[i] = fabsf(rndf()) * 0.01f + 1e-4f; z[i] = (float)(rnd() % 256); }
            for (int64_t c = 0; c < cols; c++) x[c] = rndf();
            lq_uniform m = {q, s, z, rows, cols, group};
            lq_uniform_dequantize_level(LQ_LEVEL_SCALAR, &m, 0, rows, a);
            lq_uniform_dequantize_level(level, &m, 0, rows, b);
            char what[80];
            snprintf(what, sizeof what, "uniform dequantize cols %lld group %lld", (long long)cols, (long long)group);
            check(memcmp(a, b, sizeof(float) * rows * cols) == 0, what);
            lq_uniform_dequantize_level(level, &m, 3, 7, b);  // a row range lands at the start of out
            check(memcmp(a + 3 * cols, b, sizeof(float) * 4 * cols) == 0, "uniform dequantize row range");
            lq_uniform_gemv_level(LQ_LEVEL_SCALAR, &m, 0, rows, x, y0);
            lq_uniform_gemv_level(level, &m, 0, rows, x, y1);
            int ok = 1;
            for (int64_t r = 0; r < rows; r++) {
                double exact = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) { exact += (double)a[r * cols + c] * x[c]; mag += fabs((double)a[r * cols + c] * x[c]); }
                ok &= fabs((double)y0[r] - exact) <= 1e-5 * mag + 1e-30 && fabs((double)y1[r] - exact) <= 1e-5 * mag + 1e-30;
            }
            snprintf(what, sizeof what, "uniform gemv cols %lld group %lld", (long long)cols, (long long)group);
            check(ok, what);
            // act-order's g_idx: the sequential one gives the same bits as none; a shuffled one
            // (each column in any group) decodes each column with its own group's scale and zero.
            int32_t *g_idx = malloc(sizeof(int32_t) * cols);
            for (int64_t c = 0; c < cols; c++) g_idx[c] = (int32_t)(c / group);
            lq_uniform sequential = m;
            sequential.g_idx = g_idx;
            lq_uniform_dequantize_level(level, &sequential, 0, rows, b);
            check(memcmp(a, b, sizeof(float) * rows * cols) == 0, "uniform dequantize with the sequential g_idx");
            for (int64_t c = 0; c < cols; c++) g_idx[c] = (int32_t)(rnd() % ng);
            lq_uniform_dequantize_level(level, &sequential, 0, rows, b);
            ok = 1;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    const int64_t g = (int64_t)g_idx[c] * rows + r;
                    const float want = s[g] * ((float)q[r * cols + c] - z[g]);
                    ok &= memcmp(&want, &b[r * cols + c], sizeof(float)) == 0;
                }
            snprintf(what, sizeof what, "uniform dequantize with a shuffled g_idx, cols %lld group %lld", (long long)cols, (long long)group);
            check(ok, what);
            lq_uniform_gemv_level(level, &sequential, 0, rows, x, y1);
            ok = 1;
            for (int64_t r = 0; r < rows; r++) {
                double exact = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) { exact += (double)b[r * cols + c] * x[c]; mag += fabs((double)b[r * cols + c] * x[c]); }
                ok &= fabs((double)y1[r] - exact) <= 1e-5 * mag + 1e-30;
            }
            snprintf(what, sizeof what, "uniform gemv with a shuffled g_idx, cols %lld group %lld", (long long)cols, (long long)group);
            check(ok, what);
            free(g_idx);
            free(q); free(s); free(z); free(x); free(a); free(b);
        }
}

// ---- The thread pool: every chunk runs exactly once, nested and concurrent loops included ----

typedef struct {
    _Atomic int *hits;
    int nested;  // each chunk also runs a small loop of its own (which the pool runs inline)
} pool_job;

static void pool_inner(void *context, int64_t c) {
    atomic_fetch_add((_Atomic int *)context + c, 1);
}

static void pool_task(void *context, int64_t c) {
    pool_job *job = context;
    atomic_fetch_add(&job->hits[c], 1);
    if (job->nested) {
        _Atomic int inner[3] = {0, 0, 0};
        lq_pool_run(2, 3, pool_inner, (void *)inner);
        if (inner[0] != 1 || inner[1] != 1 || inner[2] != 1) atomic_fetch_add(&job->hits[c], 1000);
    }
}

static int pool_rounds(int rounds, int nested) {
    int ok = 1;
    for (int r = 0; r < rounds; r++) {
        const int64_t chunks = 1 + r % 37;
        _Atomic int hits[37];
        for (int i = 0; i < 37; i++) atomic_init(&hits[i], 0);
        pool_job job = {hits, nested};
        lq_pool_run(1 + r % 4, chunks, pool_task, &job);
        for (int64_t i = 0; i < chunks; i++) ok &= atomic_load(&hits[i]) == 1;
    }
    return ok;
}

static void *pool_thread(void *arg) {
    *(int *)arg = pool_rounds(2000, 0);
    return NULL;
}

static void test_pool(void) {
    // Sleeping workers (woken for each loop), then spinning ones.
    for (int spin = 0; spin <= 50; spin += 50) {
        lq_pool_set_spin_us(spin);
        char what[64];
        snprintf(what, sizeof what, "pool (spin %d us): every chunk once", spin);
        check(pool_rounds(3000, 0), what);
        snprintf(what, sizeof what, "pool (spin %d us): nested loops run inline", spin);
        check(pool_rounds(300, 1), what);
        int results[3] = {0, 0, 0};
        pthread_t threads[3];
        for (int i = 0; i < 3; i++) pthread_create(&threads[i], NULL, pool_thread, &results[i]);
        for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
        snprintf(what, sizeof what, "pool (spin %d us): loops from three threads at once", spin);
        check(results[0] && results[1] && results[2], what);
    }
    lq_pool_set_spin_us(0);
}

static void test_activations(lq_level level) {
    const int64_t sizes[] = {1, 7, 8, 31, 33, 512, 49152};
    for (int k = 0; k < 7; k++) {
        int64_t n = sizes[k];
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
        for (int64_t i = 0; i < n; i++) { a[i] = b[i] = 12.0f * rndf(); u[i] = rndf(); }
        char what[96];
        double la = lq_logsumexp_level(LQ_LEVEL_SCALAR, a, n), lb = lq_logsumexp_level(level, a, n);
        snprintf(what, sizeof what, "logsumexp n=%lld", (long long)n);
        check(fabs(la - lb) <= 2e-6 * fmax(1.0, fabs(la)), what);
        lq_softmax_level(LQ_LEVEL_SCALAR, a, n);
        lq_softmax_level(level, b, n);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= fabsf(a[i] - b[i]) <= 3e-6f * a[i] + 1e-30f;  // sums in another order
        snprintf(what, sizeof what, "softmax n=%lld", (long long)n);
        check(ok, what);
        for (int64_t i = 0; i < n; i++) a[i] = b[i] = 20.0f * rndf();
        lq_silu_mul_level(LQ_LEVEL_SCALAR, a, u, n);
        lq_silu_mul_level(level, b, u, n);
        ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= fabsf(a[i] - b[i]) <= 4e-7f * fabsf(a[i]) + 1e-30f;
        snprintf(what, sizeof what, "silu_mul n=%lld", (long long)n);
        check(ok, what);
        float *g = malloc(sizeof(float) * n), *dm = malloc(sizeof(float) * n);
        float *dg0 = malloc(sizeof(float) * n), *du0 = malloc(sizeof(float) * n), *dg1 = malloc(sizeof(float) * n), *du1 = malloc(sizeof(float) * n);
        for (int64_t i = 0; i < n; i++) { g[i] = 20.0f * rndf(); dm[i] = rndf(); }
        lq_silu_mul_backward_level(LQ_LEVEL_SCALAR, dm, g, u, dg0, du0, n);
        lq_silu_mul_backward_level(level, dm, g, u, dg1, du1, n);
        ok = 1;
        for (int64_t i = 0; i < n; i++) {
            // dg's factor 1 + g(1 − σ) cancels near g ≈ −1.28: compare against the size of its terms.
            float scale = fabsf(dm[i] * u[i]) * (1.0f + fabsf(g[i]));
            ok &= fabsf(du0[i] - du1[i]) <= 1e-6f * fabsf(dm[i] * g[i]) + 1e-30f;
            ok &= fabsf(dg0[i] - dg1[i]) <= 1e-6f * scale + 1e-30f;
        }
        snprintf(what, sizeof what, "silu_mul_backward n=%lld", (long long)n);
        check(ok, what);
        free(g); free(dm); free(dg0); free(du0); free(dg1); free(du1);
        free(a); free(b); free(u);
    }
}

/// The error table's fused kernel: every level's bits equal the scalar twin's, and both equal
/// encode (lq_encode_blocks) then decode then measure, summed plainly, to rounding.
/// clustered: every code within 0.002 of 0.3 (more than 8 midpoints to a bin: the SIMD binary search).
static void test_block_error(lq_level level, int bits, int block, int weighted, int clustered) {
    const int64_t blocks = 37, n = blocks * block;
    float *w = malloc(sizeof(float) * n), *f = malloc(sizeof(float) * n), *scales = malloc(sizeof(float) * blocks);
    for (int64_t i = 0; i < n; i++) { w[i] = rndf(); f[i] = 0.5f + (float)(rnd() % 1000) / 700.0f; }
    for (int64_t b = 0; b < blocks; b++) {
        float m = 0;
        for (int64_t i = b * block; i < (b + 1) * block; i++) m = fmaxf(m, fabsf(w[i]));
        scales[b] = m * (0.7f + (float)(rnd() % 600) / 1000.0f);  // around the absmax: some values beyond ±1
    }
    for (int64_t i = 3 * block; i < 4 * block; i++) w[i] = 0;  // an all-zero block with a zero scale: 0/0
    scales[3] = 0;
    scales[5] = 0;  // a zero scale under nonzero values: ±inf codes to the ends, decodes to 0
    const int ncodes = 1 << bits;
    float codebook[256], midpoints[255];
    for (int i = 0; i < ncodes; i++) codebook[i] = clustered ? 0.3f + rndf() * 0.002f : rndf();
    qsort(codebook, ncodes, sizeof(float), cmp_float);
    for (int i = 0; i + 1 < ncodes; i++) midpoints[i] = (codebook[i] + codebook[i + 1]) / 2;
    if (clustered) for (int64_t i = 0; i < n; i++) w[i] = scales[i / block] * (0.3f + rndf() * 0.003f);
    const float *fisher = weighted ? f : NULL;
    uint8_t *codes = calloc(lq_packed_bytes(bits, n) + 4, 1);
    lq_encode_blocks(w, n, 0, n, block, scales, LQ_ENCODE_DIVIDE, midpoints, ncodes, bits, codes);
    const int64_t ranges[][2] = {{0, n}, {2 * block, 5 * block}, {block, 3 * block + 13}};
    char what[160];
    for (int r = 0; r < 3; r++) {
        const int64_t start = ranges[r][0], count = ranges[r][1];
        double plain = 0, mag = 0;
        for (int64_t i = start; i < start + count; i++) {
            const double e = (double)w[i] - (double)(codebook[lq_get_code(codes, bits, i)] * scales[i / block]);
            plain += (fisher ? (double)fisher[i] : 1.0) * e * e;
            mag += fabs((fisher ? (double)fisher[i] : 1.0) * e * e);
        }
        const double ref = lq_block_error_level(LQ_LEVEL_SCALAR, w, fisher, start, count, block, scales, midpoints, codebook, bits);
        const double got = lq_block_error_level(level, w, fisher, start, count, block, scales, midpoints, codebook, bits);
        snprintf(what, sizeof what, "block error bits %d block %d fisher %d clustered %d range %lld+%lld", bits, block, weighted,
                 clustered, (long long)start, (long long)count);
        check(memcmp(&ref, &got, sizeof ref) == 0 && fabs(ref - plain) <= 1e-12 * mag, what);
    }
    free(w); free(f); free(scales); free(codes);
}

// ---- int8 activations against NormalFloat weights (lq_q8.h) ----

/// The slot of element e (0..63) of a pair, found through lq_q8_element.
static int q8_slot(int bits, int e) {
    for (int s = 0; s < 64; s++)
        if (lq_q8_element(bits, s) == e) return s;
    return -1;
}

/// The quantizer bit-equal at every level on rows of awkward lengths (a zero block, an outlier).
static void test_q8_quantize(lq_level level) {
    const int64_t widths[] = {1, 31, 32, 33, 96, 100, 576};
    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < 7; k++) {
            const int64_t cols = widths[k], nb = lq_q8_blocks(cols), bytes = lq_q8_row_bytes(cols);
            float *x = malloc(sizeof(float) * cols);
            for (int64_t c = 0; c < cols; c++) x[c] = 3.0f * rndf();
            if (cols >= 64) {
                for (int64_t c = 32; c < 64; c++) x[c] = 0;  // an all-zero block: d = 0, q = 0
                x[cols - 1] = 1000.0f;                        // an outlier
            }
            int8_t *q0 = malloc(bytes), *q1 = malloc(bytes);
            float *d0 = malloc(sizeof(float) * nb), *d1 = malloc(sizeof(float) * nb);
            memset(q0, 0x55, bytes);  // every byte written, padding included
            memset(q1, 0x33, bytes);
            lq_q8_quantize_level(LQ_LEVEL_SCALAR, bits[b], x, cols, q0, d0);
            lq_q8_quantize_level(level, bits[b], x, cols, q1, d1);
            // Each value within half a step of x, in the slot lq_q8_element names; the rest zeros.
            int ok = memcmp(q0, q1, bytes) == 0 && memcmp(d0, d1, sizeof(float) * nb) == 0;
            int used[1024] = {0};
            for (int64_t c = 0; c < cols; c++) {
                const int64_t j = c / 32, at = 64 * (j / 2) + q8_slot(bits[b], 32 * (j % 2) + c % 32);
                used[at] = 1;
                ok &= fabsf(x[c] - d0[j] * q0[at]) <= 0.5f * d0[j] * (1 + 1e-5f) + 1e-30f;
            }
            for (int64_t k = 0; k < bytes; k++) ok &= used[k] || q0[k] == 0;
            char what[80];
            snprintf(what, sizeof what, "q8 quantize bits %d cols %lld", bits[b], (long long)cols);
            check(ok, what);
            free(x); free(q0); free(q1); free(d0); free(d1);
        }
}

static const float nf4_codebook[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                       -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                       0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                                       0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/// The worst relative RMS error of the int8 products against the exact ones, over the NF4 cases:
/// plain Q8_0 on bell-shaped x, and on x with outlier channels without and with their residual.
static double q8_worst_nf4_rms = 0, q8_worst_outlier_rms = 0, q8_worst_residual_rms = 0;

/// The residual's rule of lq_q8.h for τ = 2 at tau.
#define Q8_TEST_TAU 2.0f

/// The product bit-equal to the scalar twin (all rows of x at once, one at a time, and W's rows
/// split), and within the error bound of lq_q8.h against the exact dense product:
/// |y − Ŵx| ≤ Σ_c |s_b| (δ/2 · |x̂_c| + |c_k| · e_c) + 1e-5 Σ_c |Ŵ x|, e_c = d_j/2 (with a residual,
/// d2_j/2 + 1e-6 |x_c| for a flagged block: the residual's step and the fp32 rounding of x − d_j q).
/// outliers: x has channels at 12× (every 101st from 5), so some blocks hold one; residual (with
/// outliers): the product takes lq_q8_quantize_residual's second copy, and is also checked bit for
/// bit against the plain product where no block is flagged (d2 = 0 everywhere).
static void test_q8_gemv(lq_level level, int bits, int block, int kind, int scale_bits, int group, int64_t cols,
                         const float *codebook, const lq_q8_codebook *cb8, int outliers, int residual) {
    const int64_t rows = 24, n = rows * cols, nx = 6, blocks = (n + block - 1) / block;
    random_matrix m;
    random_matrix_make(&m, bits, block, kind, scale_bits, group, n, codebook);
    const lq_qtensor t = m.t;
    const uint8_t *codes = m.codes;

    const int64_t nb = lq_q8_blocks(cols), stride = lq_q8_row_bytes(cols);
    float *x = malloc(sizeof(float) * nx * cols), *d = malloc(sizeof(float) * nx * nb), *d2 = calloc(nx * nb, sizeof(float));
    int8_t *q = malloc(nx * stride), *q2 = calloc(nx * stride, 1);
    for (int64_t i = 0; i < nx * cols; i++) x[i] = rndf() + rndf() + rndf();  // roughly bell-shaped
    if (outliers)
        for (int64_t i = 0; i < nx; i++)
            for (int64_t c = 5; c < cols; c += 101) x[i * cols + c] *= 12.0f;
    int64_t flagged = 0;
    for (int64_t i = 0; i < nx; i++) {
        lq_q8_quantize_level(LQ_LEVEL_SCALAR, bits, x + i * cols, cols, q + i * stride, d + i * nb);
        if (residual)
            flagged += lq_q8_quantize_residual(bits, x + i * cols, cols, Q8_TEST_TAU, q + i * stride, d + i * nb, q2 + i * stride,
                                               d2 + i * nb);
    }
    const lq_q8_rows all = {q, d, nx, residual ? q2 : NULL, residual ? d2 : NULL};
    float *y0 = malloc(sizeof(float) * nx * rows), *y1 = malloc(sizeof(float) * nx * rows), *y2 = malloc(sizeof(float) * nx * rows);
    lq_q8_gemv_level(LQ_LEVEL_SCALAR, &t, cb8, cols, 0, rows, &all, y0, rows);
    lq_q8_gemv_level(level, &t, cb8, cols, 0, 7, &all, y1, rows);  // W's rows in two ranges
    lq_q8_gemv_level(level, &t, cb8, cols, 7, rows, &all, y1, rows);
    for (int64_t i = 0; i < nx; i++) {  // x's rows one at a time
        const lq_q8_rows one = {q + i * stride, d + i * nb, 1, residual ? q2 + i * stride : NULL, residual ? d2 + i * nb : NULL};
        lq_q8_gemv_level(level, &t, cb8, cols, 0, rows, &one, y2 + i * rows, rows);
    }
    char what[200];
    snprintf(what, sizeof what, "q8 gemv bits %d block %d kind %d/%d/%d cols %lld outliers %d residual %d: bit-equal to scalar", bits,
             block, kind, scale_bits, group, (long long)cols, outliers, residual);
    check(memcmp(y0, y1, sizeof(float) * nx * rows) == 0 && memcmp(y0, y2, sizeof(float) * nx * rows) == 0, what);
    if (residual) {
        // Flagged blocks exist (x has outliers), and with none flagged the result is plain Q8_0's.
        float *z0 = malloc(sizeof(float) * nx * rows), *z1 = malloc(sizeof(float) * nx * rows);
        float *none = calloc(nx * nb, sizeof(float));
        int8_t *zeros = calloc(nx * stride, 1);
        const lq_q8_rows plain = {q, d, nx, NULL, NULL}, unflagged = {q, d, nx, zeros, none};
        lq_q8_gemv_level(level, &t, cb8, cols, 0, rows, &plain, z0, rows);
        lq_q8_gemv_level(level, &t, cb8, cols, 0, rows, &unflagged, z1, rows);
        // (τ = 2 flags nothing in a row of two blocks: d_j ≤ Σ d = 2 · mean.)
        snprintf(what, sizeof what, "q8 gemv bits %d block %d cols %lld: %lld flagged blocks; none flagged = plain Q8_0", bits, block,
                 (long long)cols, (long long)flagged);
        check((flagged > 0 || nb < 3) && memcmp(z0, z1, sizeof(float) * nx * rows) == 0, what);
        free(z0); free(z1); free(none); free(zeros);
    }

    float *w = malloc(sizeof(float) * n), *s = malloc(sizeof(float) * blocks);
    lq_dequantize_level(LQ_LEVEL_SCALAR, &t, 0, n, w);
    lq_block_scales(&t, 0, blocks, s);
    int ok = 1;
    double err2 = 0, ref2 = 0;
    for (int64_t i = 0; i < nx; i++)
        for (int64_t r = 0; r < rows; r++) {
            double exact = 0, mag = 0, bound = 0;
            for (int64_t c = 0; c < cols; c++) {
                const int64_t j = c / 32, f = r * cols + c, at = i * stride + 64 * (j / 2) + q8_slot(bits, 32 * (j % 2) + c % 32);
                const double dj = d[i * nb + j], d2j = d2[i * nb + j];
                const double xh = dj * q[at] + d2j * q2[at];
                const double ex = d2j != 0 ? d2j / 2.0 + 1e-6 * fabs((double)x[i * cols + c]) : dj / 2.0;
                const double code = codebook[lq_get_code(codes, bits, f)];
                exact += (double)w[f] * x[i * cols + c];
                mag += fabs((double)w[f] * x[i * cols + c]);
                bound += fabs((double)s[f / block]) * (cb8->scale / 2.0 * fabs(xh) + fabs(code) * ex);
            }
            const double e = (double)y0[i * rows + r] - exact;
            ok &= fabs(e) <= bound + 1e-5 * mag + 1e-30;
            err2 += e * e;
            ref2 += exact * exact;
        }
    snprintf(what, sizeof what, "q8 gemv bits %d block %d kind %d/%d/%d cols %lld outliers %d residual %d: within the bound of the exact product",
             bits, block, kind, scale_bits, group, (long long)cols, outliers, residual);
    check(ok, what);
    if (codebook == nf4_codebook) {
        double *worst = residual ? &q8_worst_residual_rms : outliers ? &q8_worst_outlier_rms : &q8_worst_nf4_rms;
        if (sqrt(err2 / ref2) > *worst) *worst = sqrt(err2 / ref2);
    }
    random_matrix_free(&m);
    free(x); free(d); free(q); free(d2); free(q2); free(y0); free(y1); free(y2); free(w); free(s);
}

/// The residual's quantizer: the flagged blocks are those of lq_q8.h's rule (none at τ = +inf, every
/// nonzero one at τ = 0), each value of a flagged block within half a residual step of x − d q, zeros
/// elsewhere; and the same bytes whichever level quantized x (it is one scalar code on bit-equal q, d).
static void test_q8_residual(lq_level level) {
    const int64_t widths[] = {1, 33, 96, 100, 576};
    const float taus[] = {0.0f, 1.5f, Q8_TEST_TAU, 4.0f, INFINITY};
    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < 5; k++)
            for (int u = 0; u < 5; u++) {
                const int64_t cols = widths[k], nb = lq_q8_blocks(cols), bytes = lq_q8_row_bytes(cols);
                float *x = malloc(sizeof(float) * cols), *d = malloc(sizeof(float) * nb), *d2 = malloc(sizeof(float) * nb);
                float *e2 = malloc(sizeof(float) * nb);
                int8_t *q = malloc(bytes), *q2 = malloc(bytes), *p2 = malloc(bytes);
                for (int64_t c = 0; c < cols; c++) x[c] = rndf() + rndf() + rndf();
                for (int64_t c = 7; c < cols; c += 41) x[c] *= 10.0f;
                if (cols >= 64)
                    for (int64_t c = 32; c < 64; c++) x[c] = 0;  // an all-zero block: never flagged
                memset(q2, 0x55, bytes);                         // every byte written
                lq_q8_quantize_level(level, bits[b], x, cols, q, d);
                const int64_t flagged = lq_q8_quantize_residual(bits[b], x, cols, taus[u], q, d, q2, d2);
                // The same from the scalar quantizer's q and d.
                int8_t *q0 = malloc(bytes);
                float *d0 = malloc(sizeof(float) * nb);
                lq_q8_quantize_level(LQ_LEVEL_SCALAR, bits[b], x, cols, q0, d0);
                lq_q8_quantize_residual(bits[b], x, cols, taus[u], q0, d0, p2, e2);
                int ok = memcmp(q2, p2, bytes) == 0 && memcmp(d2, e2, sizeof(float) * nb) == 0;
                float sum = 0;
                for (int64_t j = 0; j < nb; j++) sum += d[j];
                int64_t count = 0;
                int used[1024] = {0};
                for (int64_t j = 0; j < nb; j++) {
                    const int want = d[j] > taus[u] * (sum / (float)nb) && d[j] > 0;
                    count += d2[j] != 0;
                    ok &= want ? d2[j] >= 0 : d2[j] == 0;
                }
                for (int64_t c = 0; c < cols; c++) {
                    const int64_t j = c / 32, at = 64 * (j / 2) + q8_slot(bits[b], 32 * (j % 2) + c % 32);
                    used[at] = d2[j] != 0;
                    const float r = x[c] - d[j] * (float)q[at];
                    if (d2[j] != 0) ok &= fabsf(r - d2[j] * q2[at]) <= 0.5f * d2[j] * (1 + 1e-5f) + 1e-30f && fabsf(r) <= 0.5f * d[j] * (1 + 1e-5f);
                }
                for (int64_t k2 = 0; k2 < bytes; k2++) ok &= used[k2] || q2[k2] == 0;
                ok &= count == flagged && (taus[u] != INFINITY || flagged == 0) && (cols < 64 || taus[u] != 0 || flagged >= nb - 2);
                char what[100];
                snprintf(what, sizeof what, "q8 residual bits %d cols %lld tau %g: %lld flagged", bits[b], (long long)cols, taus[u],
                         (long long)flagged);
                check(ok, what);
                free(x); free(d); free(d2); free(e2); free(q); free(q2); free(p2); free(q0); free(d0);
            }
}

static void test_q8(lq_level level) {
    test_q8_quantize(level);
    test_q8_residual(level);
    // The int8 NF4 codebook: δ = 1/s with s on a grid of 1/256, |C| ≤ 127, each within δ/2.
    lq_q8_codebook nf4;
    lq_q8_codebook_make(nf4_codebook, 4, &nf4);
    int ok = nf4.values[0] == -nf4.values[15] && nf4.values[7] == 0 && nf4.values[15] > 100;
    for (int k = 0; k < 16; k++) ok &= fabsf(nf4_codebook[k] - nf4.scale * nf4.values[k]) <= nf4.scale / 2 * (1 + 1e-6f);
    check(ok, "q8 codebook of NF4");
    const int bits[] = {2, 3, 4, 8}, blocks[] = {16, 32, 64, 128, 48, 24, 20};
    for (int b = 0; b < 4; b++) {
        float codebook[256];
        const int ncodes = 1 << bits[b];
        for (int i = 0; i < ncodes; i++) codebook[i] = rndf();
        qsort(codebook, ncodes, sizeof(float), cmp_float);
        lq_q8_codebook cb8;
        lq_q8_codebook_make(codebook, bits[b], &cb8);
        ok = 1;
        for (int i = 0; i < ncodes; i++) ok &= fabsf(codebook[i] - cb8.scale * cb8.values[i]) <= cb8.scale / 2 * (1 + 1e-6f) && abs(cb8.values[i]) <= 127;
        check(ok, "q8 codebook of a random codebook");
        for (int k = 0; k < 7; k++)
            // 192 columns: whole pairs of activation blocks; rows of three weight blocks (short blocks,
            // or weight blocks of 48, 24 and 20: the scalar twin); 96: a lone last block, and blocks of
            // 64 and 128 that straddle rows.
            for (int c = 0; c < 3; c++) {
                const int64_t cols = c == 0 ? 192 : c == 1 ? 3 * blocks[k] : 96;
                const float *cbk = bits[b] == 4 && k < 3 ? nf4_codebook : codebook;
                const lq_q8_codebook *c8 = cbk == nf4_codebook ? &nf4 : &cb8;
                for (int v = 0; v < 3; v++) {  // plain Q8_0; x with outliers; the same with their residual
                    const int outliers = v > 0, residual = v == 2;
                    test_q8_gemv(level, bits[b], blocks[k], LQ_SCALES_F32, 32, 0, cols, cbk, c8, outliers, residual);
                    test_q8_gemv(level, bits[b], blocks[k], LQ_SCALES_DYNAMIC8, 8, 256, cols, cbk, c8, outliers, residual);
                    test_q8_gemv(level, bits[b], blocks[k], LQ_SCALES_UINT, 3, 16, cols, cbk, c8, outliers, residual);
                    test_q8_gemv(level, bits[b], blocks[k], LQ_SCALES_UINT, 8, 4, cols, cbk, c8, outliers, residual);
                }
            }
    }
    printf("q8: NF4 products within %.2f%% (relative RMS) of the exact ones; with outlier channels %.2f%%, with their residual "
           "(tau %g) %.2f%%; integer dot product: %s\n",
           100 * q8_worst_nf4_rms, 100 * q8_worst_outlier_rms, Q8_TEST_TAU, 100 * q8_worst_residual_rms, lq_q8_dot());
}

int main(void) {
    lq_level level = lq_best_level();
    printf("kernel_levels: comparing %s with scalar\n", lq_level_name(level));
    test_conversions(level);
    test_gemv16(level);
    test_uniform(level);
    test_pool();
    test_activations(level);
    test_q8(level);
    // The table's block sizes, plus 24 and 20 (not a multiple of 16, of 8), which the C layer accepts
    // and the SIMD paths must hand to the reference where their loads do not fit.
    const int bits[] = {2, 3, 4, 8}, blocks[] = {16, 32, 64, 24, 20};
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < 5; k++) {
            // Three blocks per row, and 192 columns (the whole-64-group GEMV cores).
            for (int c = 0; c < 2; c++) {
                const int64_t cols = c == 0 ? 3 * blocks[k] : 192;
                test_format(level, bits[b], blocks[k], LQ_SCALES_F32, 32, 0, cols);
                test_format(level, bits[b], blocks[k], LQ_SCALES_DYNAMIC8, 8, 256, cols);
                test_format(level, bits[b], blocks[k], LQ_SCALES_UINT, 3, 16, cols);
                test_format(level, bits[b], blocks[k], LQ_SCALES_UINT, 8, 4, cols);
            }
        }
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < 3; k++)
            for (int weighted = 0; weighted < 2; weighted++)
                for (int clustered = 0; clustered < 2; clustered++) test_block_error(level, bits[b], blocks[k], weighted, clustered);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
