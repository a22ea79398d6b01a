// Checks every kernel of liblqlora_cuda.so against the CPU scalar reference, then (with --bench)
// measures them against their anchors in the same run. Built by scripts/build-cuda.sh; loads the
// library through the same loader as lqlora (set LQLORA_CUDA_LIBRARY to choose the file).
//
//   cuda-check            correctness: dequantization bit-exact, GEMV/GEMM within 1e-5 of Σ|w·x|; the
//                         decoder's other operations against lq_device_ops.h (RoPE bit-exact)
//   cuda-check --bench    plus dequantization GB/s vs a device-to-device copy, NF4/NF3/NF2 GEMV vs
//                         cuBLAS SGEMV (fp32) and fp16 GEMV, GEMM (512 rows) vs cublasSgemm
// Exit status: 0 all passed, 1 a check failed, 77 no usable library or device (skipped).
//
// Built with -DLQ_CUDA_CHECK_EMULATED and Tests/CUDAEmulation/emulation.c, it runs the same checks
// against the host emulation of the library (scripts/test-cuda.sh): the checker, its references and
// the CPU kernels the emulation uses are then exercised on every machine.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_activations.h"
#include "lq_cuda.h"
#include "lq_device_ops.h"
#ifdef LQ_CUDA_CHECK_EMULATED
#include "lq_cuda_emulation.h"
#endif
#include "quant_impl.h"

static const lq_cuda_api *gpu;
static int failures = 0;

#define CHECK(call)                                                                              \
    do {                                                                                         \
        if ((call) != 0) {                                                                       \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, gpu->last_error()); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

// ---- Deterministic random data (splitmix64) ----
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((next_u64() >> 40) * 0x1p-24); }

static int compare_floats(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/// A random quantized matrix of one format: random packed codes and scale codes, sorted codebook
/// and map. Every buffer is its own allocation so the checks see what the kernels read.
typedef struct {
    lq_qtensor t;
    int64_t rows, cols;
    void *owned[6];
} host_matrix;

static void *random_bytes(size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)next_u64();
    return p;
}

static host_matrix make_matrix(lq_qformat f, int64_t rows, int64_t cols) {
    host_matrix m = {.rows = rows, .cols = cols};
    const int64_t numel = rows * cols, blocks = lq_num_blocks(numel, f.block_size);
    const int64_t groups = f.scale_kind == LQ_SCALES_F32 ? 0 : (blocks + f.scale_block_size - 1) / f.scale_block_size;
    uint8_t *codes = random_bytes(lq_packed_bytes(f.bits, numel));
    float *codebook = malloc(sizeof(float) << f.bits);
    for (int k = 0; k < (1 << f.bits); k++) codebook[k] = uniform(-1, 1);
    qsort(codebook, (size_t)1 << f.bits, sizeof(float), compare_floats);
    float *absmax = NULL, *map = NULL, *group = NULL;
    uint8_t *scale_codes = NULL;
    if (f.scale_kind == LQ_SCALES_F32) {
        absmax = malloc(sizeof(float) * blocks);
        for (int64_t b = 0; b < blocks; b++) absmax[b] = uniform(0, 0.2f);
    } else {
        group = malloc(sizeof(float) * groups);
        for (int64_t g = 0; g < groups; g++) group[g] = uniform(0.01f, 0.3f);
        if (groups > 1) group[groups - 1] = 0;  // a dead group: decodes to the offset alone
        if (f.scale_kind == LQ_SCALES_DYNAMIC8) {
            scale_codes = random_bytes((size_t)blocks);
            map = malloc(sizeof(float) * LQ_DYNAMIC8_MAP_SIZE);
            for (int k = 0; k < LQ_DYNAMIC8_MAP_SIZE; k++) map[k] = uniform(-1, 1);
            qsort(map, LQ_DYNAMIC8_MAP_SIZE, sizeof(float), compare_floats);
        } else {
            scale_codes = random_bytes(lq_packed_bytes(f.scale_bits, blocks));
        }
    }
    m.t = (lq_qtensor){.format = f, .numel = numel, .codes = codes, .codebook = codebook, .absmax = absmax,
                       .scale_codes = scale_codes, .scale_map = map, .group_absmax = group,
                       .scale_offset = f.scale_kind == LQ_SCALES_F32 ? 0 : uniform(0, 0.05f)};
    void *owned[6] = {codes, codebook, absmax, scale_codes, map, group};
    memcpy(m.owned, owned, sizeof owned);
    return m;
}

static void free_matrix(host_matrix *m) {
    for (int k = 0; k < 6; k++) free(m->owned[k]);
}

static float *device_floats(const float *host, size_t n) {
    void *d;
    CHECK(gpu->malloc(&d, n * sizeof(float)));
    if (host) CHECK(gpu->upload(d, host, n * sizeof(float)));
    return d;
}

static float *download_floats(const float *device, size_t n) {
    float *h = malloc(n * sizeof(float));
    CHECK(gpu->download(h, device, n * sizeof(float)));
    return h;
}

/// |got − want| ≤ tol · Σ|w·x| + 1e-30 for every entry; prints the first miss.
static void expect_close(const char *what, const float *got, const double *want, const double *magnitude, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(got[i] - want[i]) <= tol * magnitude[i] + 1e-30)) {
            fprintf(stderr, "FAIL %s: entry %zu is %.9g, reference %.9g (scale %.3g)\n", what, i, got[i], want[i], magnitude[i]);
            failures++;
            return;
        }
    }
}

/// Y[n, rows] = X[n, cols] · Wᵀ (or, transposed, dX[n, cols] = beta·dX + dY[n, rows] · W) in double
/// from the scalar dequantization, with Σ|w·x| for the tolerance.
static void reference_product(const float *w, int64_t rows, int64_t cols, const float *x, int64_t n, int transposed,
                              float beta, const float *y0, double *want, double *magnitude) {
    const int64_t out = transposed ? cols : rows;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < out; j++) {
            double acc = beta != 0 ? (double)beta * y0[i * out + j] : 0, mag = fabs(acc);
            const int64_t inner = transposed ? rows : cols;
            for (int64_t k = 0; k < inner; k++) {
                const double wv = transposed ? w[k * cols + j] : w[j * cols + k];
                acc += wv * x[i * inner + k];
                mag += fabs(wv * x[i * inner + k]);
            }
            want[i * out + j] = acc;
            magnitude[i * out + j] = mag;
        }
    }
}

static void check_format(lq_qformat f, int64_t rows, int64_t cols) {
    char name[160];
    snprintf(name, sizeof name, "nf%d bs%d scales%d/%d/%d %lldx%lld", f.bits, f.block_size, f.scale_kind, f.scale_bits,
             f.scale_block_size, (long long)rows, (long long)cols);
    host_matrix m = make_matrix(f, rows, cols);
    const int64_t numel = rows * cols;
    lq_cuda_matrix *dm;
    CHECK(gpu->matrix_upload(&m.t, rows, cols, &dm));

    // Dequantization: bit for bit.
    float *want = malloc(sizeof(float) * numel);
    lq_dequantize_level(LQ_LEVEL_SCALAR, &m.t, 0, numel, want);
    float *d_w = device_floats(NULL, (size_t)numel);
    CHECK(gpu->dequantize(dm, d_w));
    float *got = download_floats(d_w, (size_t)numel);
    if (memcmp(got, want, sizeof(float) * numel) != 0) {
        for (int64_t i = 0; i < numel; i++)
            if (memcmp(&got[i], &want[i], sizeof(float))) {
                fprintf(stderr, "FAIL %s dequantize: value %lld is %.9g, reference %.9g\n", name, (long long)i, got[i], want[i]);
                break;
            }
        failures++;
    }

    // Products: GEMV for 1-8 rows, GEMM for more, both directions through the host entry point too.
    const int64_t ns[] = {1, 3, 8, 9, 37};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int64_t n = ns[k];
        for (int transposed = 0; transposed < 2; transposed++) {
            const int64_t in = transposed ? rows : cols, out = transposed ? cols : rows;
            const float beta = transposed ? 1.0f : 0.0f;
            float *x = malloc(sizeof(float) * n * in), *y0 = malloc(sizeof(float) * n * out);
            for (int64_t i = 0; i < n * in; i++) x[i] = uniform(-1, 1);
            for (int64_t i = 0; i < n * out; i++) y0[i] = uniform(-1, 1);
            double *ref = malloc(sizeof(double) * n * out), *mag = malloc(sizeof(double) * n * out);
            reference_product(want, rows, cols, x, n, transposed, beta, y0, ref, mag);
            char what[200];

            float *d_x = device_floats(x, (size_t)(n * in)), *d_y = device_floats(y0, (size_t)(n * out));
            if (!transposed && n <= LQ_CUDA_GEMV_MAX_ROWS) {
                CHECK(gpu->gemv(dm, d_x, n, d_y));
                snprintf(what, sizeof what, "%s gemv n=%lld", name, (long long)n);
            } else {
                CHECK(gpu->gemm(dm, d_x, n, transposed, beta, d_w, d_y));
                snprintf(what, sizeof what, "%s gemm%s n=%lld", name, transposed ? " transposed" : "", (long long)n);
            }
            float *y = download_floats(d_y, (size_t)(n * out));
            expect_close(what, y, ref, mag, (size_t)(n * out), 1e-5);

            memcpy(y, y0, sizeof(float) * n * out);
            CHECK(gpu->matmul_host(dm, x, n, transposed, beta, y));
            snprintf(what, sizeof what, "%s matmul_host%s n=%lld", name, transposed ? " transposed" : "", (long long)n);
            expect_close(what, y, ref, mag, (size_t)(n * out), 1e-5);

            CHECK(gpu->free(d_x));
            CHECK(gpu->free(d_y));
            free(x), free(y0), free(y), free(ref), free(mag);
        }
    }
    CHECK(gpu->free(d_w));
    gpu->matrix_free(dm);
    free(got), free(want);
    free_matrix(&m);
}

static void run_checks(void) {
    // Every bit width with each scale storage, block sizes of the table (16/32/64) plus a power-of-two
    // free one (24) and one the 8-value kernels cannot take (20), on awkward shapes: columns not a
    // multiple of 8, blocks straddling rows, a short last block, a single row.
    const int bits[] = {2, 3, 4, 8};
    const lq_qformat scales[] = {
        {0, 64, LQ_SCALES_F32, 32, 0},      {0, 64, LQ_SCALES_DYNAMIC8, 8, 256}, {0, 16, LQ_SCALES_UINT, 8, 256},
        {0, 32, LQ_SCALES_UINT, 3, 64},     {0, 64, LQ_SCALES_UINT, 2, 16},      {0, 24, LQ_SCALES_UINT, 4, 16},
        {0, 20, LQ_SCALES_DYNAMIC8, 8, 256},
    };
    const int64_t shapes[][2] = {{67, 136}, {33, 100}, {1, 8}, {5, 3}, {130, 264}};
    int cases = 0;
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++)
        for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++)
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                lq_qformat f = scales[s];
                f.bits = bits[b];
                check_format(f, shapes[k][0], shapes[k][1]);
                cases++;
            }
    printf("cuda-check: %d formats x shapes, %d failures\n", cases, failures);
}

// ---- The decoder's other operations against lq_device_ops.h ----

static float *random_floats(size_t n, float lo, float hi) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

/// |got − want| ≤ tol · (|want| + floor) for every entry; prints the first miss.
static void expect_near(const char *what, const float *got, const float *want, size_t n, double tol, double floor) {
    for (size_t i = 0; i < n; i++) {
        if (!(fabs((double)got[i] - want[i]) <= tol * (fabs(want[i]) + floor))) {
            fprintf(stderr, "FAIL %s: entry %zu is %.9g, reference %.9g\n", what, i, got[i], want[i]);
            failures++;
            return;
        }
    }
}

static void expect_equal(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float))) {
            fprintf(stderr, "FAIL %s: entry %zu is %.9g, reference %.9g (bit-exact expected)\n", what, i, got[i], want[i]);
            failures++;
            return;
        }
    }
}

static void check_attention(lq_attention_shape s) {
    const int64_t qn = s.batch * s.length * s.heads * s.head_dim, kvn = s.batch * s.capacity * s.kv_heads * s.head_dim;
    float *q = random_floats((size_t)qn, -1, 1), *k = random_floats((size_t)kvn, -1, 1), *v = random_floats((size_t)kvn, -1, 1);
    float *want = malloc(sizeof(float) * qn);
    lq_ref_attention(q, k, v, &s, want);
    float *dq = device_floats(q, (size_t)qn), *dk = device_floats(k, (size_t)kvn), *dv = device_floats(v, (size_t)kvn);
    float *dout = device_floats(NULL, (size_t)qn);
    CHECK(gpu->attention(dq, dk, dv, &s, dout));
    float *got = download_floats(dout, (size_t)qn);
    char what[160];
    snprintf(what, sizeof what, "attention batch %lld length %lld start %lld heads %lld/%lld dim %lld window %lld", (long long)s.batch,
             (long long)s.length, (long long)s.start, (long long)s.heads, (long long)s.kv_heads, (long long)s.head_dim,
             (long long)s.window);
    expect_near(what, got, want, (size_t)qn, 1e-5, 1.0);  // outputs are convex combinations of values in [-1, 1]
    CHECK(gpu->free(dq)); CHECK(gpu->free(dk)); CHECK(gpu->free(dv)); CHECK(gpu->free(dout));
    free(q), free(k), free(v), free(want), free(got);
}

static void check_decoder_ops(void) {
    const int before = failures;
    // Dense product, as a LoRA update: Y = 0.5 · X · Wᵀ + Y.
    {
        const int64_t rows = 70, cols = 37, n = 13;
        float *w = random_floats(rows * cols, -1, 1), *x = random_floats(n * cols, -1, 1), *y0 = random_floats(n * rows, -1, 1);
        double *ref = malloc(sizeof(double) * n * rows), *mag = malloc(sizeof(double) * n * rows);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < rows; j++) {
                double acc = y0[i * rows + j], m = fabs(acc);
                for (int64_t c = 0; c < cols; c++) {
                    acc += 0.5 * (double)w[j * cols + c] * x[i * cols + c];
                    m += fabs(0.5 * (double)w[j * cols + c] * x[i * cols + c]);
                }
                ref[i * rows + j] = acc, mag[i * rows + j] = m;
            }
        float *dw = device_floats(w, rows * cols), *dx = device_floats(x, n * cols), *dy = device_floats(y0, n * rows);
        CHECK(gpu->dense_matmul(dw, rows, cols, dx, n, 0.5f, 1.0f, dy));
        float *y = download_floats(dy, n * rows);
        expect_close("dense_matmul", y, ref, mag, n * rows, 1e-5);
        CHECK(gpu->free(dw)); CHECK(gpu->free(dx)); CHECK(gpu->free(dy));
        free(w), free(x), free(y0), free(ref), free(mag), free(y);
    }
    // RMSNorm, residual add, bias, SwiGLU, embedding lookup.
    {
        const int64_t n = 7, width = 1000;
        float *x = random_floats(n * width, -3, 3), *w = random_floats(width, 0.5f, 1.5f), *u = random_floats(n * width, -2, 2);
        float *want = malloc(sizeof(float) * n * width);
        float *dx = device_floats(x, n * width), *dw = device_floats(w, width), *du = device_floats(u, n * width);
        float *dout = device_floats(NULL, n * width);

        lq_ref_rms_norm(x, w, n, width, 1e-5f, want);
        CHECK(gpu->rms_norm(dx, dw, n, width, 1e-5f, dout));
        float *got = download_floats(dout, n * width);
        expect_near("rms_norm", got, want, n * width, 1e-5, 1e-3);
        free(got);

        for (int64_t i = 0; i < n * width; i++) want[i] = x[i] + u[i];
        CHECK(gpu->add(dx, du, n * width));
        got = download_floats(dx, n * width);
        expect_equal("add", got, want, n * width);
        free(got);

        CHECK(gpu->upload(dx, x, sizeof(float) * n * width));
        for (int64_t i = 0; i < n * width; i++) want[i] = x[i] + w[i % width];
        CHECK(gpu->add_bias(dx, dw, n, width));
        got = download_floats(dx, n * width);
        expect_equal("add_bias", got, want, n * width);
        free(got);

        CHECK(gpu->upload(dx, x, sizeof(float) * n * width));
        memcpy(want, x, sizeof(float) * n * width);
        lq_silu_mul_level(LQ_LEVEL_SCALAR, want, u, n * width);
        CHECK(gpu->silu_mul(dx, du, n * width));
        got = download_floats(dx, n * width);
        expect_near("silu_mul", got, want, n * width, 1e-6, 1e-6);  // expf may differ by an ulp
        free(got);

        const int32_t ids[] = {6, 0, 3, 3, 1};
        float *dtable = device_floats(x, n * width);
        CHECK(gpu->gather_rows(dtable, width, ids, 5, dout));
        got = download_floats(dout, 5 * width);
        for (int i = 0; i < 5; i++) memcpy(want + i * width, x + ids[i] * width, sizeof(float) * width);
        expect_equal("gather_rows", got, want, 5 * width);
        free(got);
        CHECK(gpu->free(dx)); CHECK(gpu->free(dw)); CHECK(gpu->free(du)); CHECK(gpu->free(dout)); CHECK(gpu->free(dtable));
        free(x), free(w), free(u), free(want);
    }
    // RoPE: the same unfused products and sums as the reference, so bit for bit.
    {
        const int64_t batch = 2, length = 5, start = 9, heads = 3, dim = 80, half = dim / 2, positions = start + length;
        const int64_t count = batch * length * heads * dim;
        float *x = random_floats(count, -2, 2), *cs = malloc(sizeof(float) * positions * half), *sn = malloc(sizeof(float) * positions * half);
        for (int64_t p = 0; p < positions; p++)
            for (int64_t i = 0; i < half; i++) {
                const float angle = (float)p * powf(10000.0f, -(float)(2 * i) / (float)dim);
                cs[p * half + i] = cosf(angle), sn[p * half + i] = sinf(angle);
            }
        float *dx = device_floats(x, count), *dc = device_floats(cs, positions * half), *ds = device_floats(sn, positions * half);
        lq_ref_rope(x, cs, sn, batch, length, start, heads, dim);
        CHECK(gpu->rope(dx, dc, ds, batch, length, start, heads, dim));
        float *got = download_floats(dx, count);
        expect_equal("rope", got, x, count);
        CHECK(gpu->free(dx)); CHECK(gpu->free(dc)); CHECK(gpu->free(ds));
        free(x), free(cs), free(sn), free(got);
    }
    // Token log-likelihoods from device logits: a vocabulary not a multiple of the block, spread logits.
    {
        const int64_t n = 6, vocab = 49157;
        float *logits = random_floats((size_t)(n * vocab), -12, 12);
        const int32_t targets[] = {0, 49156, 17, 30000, 5, 5};
        double want[6], got[6];
        lq_ref_token_nll(logits, n, vocab, targets, want);
        float *d = device_floats(logits, (size_t)(n * vocab));
        CHECK(gpu->token_nll(d, n, vocab, targets, got));
        for (int i = 0; i < n; i++)
            if (!(fabs(got[i] - want[i]) <= 1e-6 * fabs(want[i]))) {
                fprintf(stderr, "FAIL token_nll: row %d is %.12g, reference %.12g\n", i, got[i], want[i]);
                failures++;
                break;
            }
        CHECK(gpu->free(d));
        free(logits);
    }
    // Attention: prefill without a cache, a chunk after cached positions, decoding, sliding window,
    // head sizes below, at and above a warp (80 is not a multiple of 32).
    const lq_attention_shape shapes[] = {
        {.batch = 2, .length = 9, .start = 0, .capacity = 9, .heads = 4, .kv_heads = 2, .head_dim = 64, .window = 0},
        {.batch = 2, .length = 5, .start = 3, .capacity = 12, .heads = 6, .kv_heads = 2, .head_dim = 80, .window = 0},
        {.batch = 1, .length = 1, .start = 40, .capacity = 48, .heads = 8, .kv_heads = 8, .head_dim = 128, .window = 0},
        {.batch = 2, .length = 7, .start = 6, .capacity = 16, .heads = 4, .kv_heads = 1, .head_dim = 16, .window = 4},
        {.batch = 1, .length = 300, .start = 0, .capacity = 300, .heads = 2, .kv_heads = 1, .head_dim = 256, .window = 0},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        lq_attention_shape s = shapes[k];
        s.scale = 1.0f / sqrtf((float)s.head_dim);
        check_attention(s);
    }
    printf("cuda-check: decoder operations (dense product, RMSNorm, add, bias, SwiGLU, lookup, RoPE, token NLL, 5 attention shapes), %d failures\n",
           failures - before);
}

// ---- Benchmark ----

typedef struct {
    const lq_cuda_matrix *m;
    const void *a;
    void *b, *c;
    int64_t rows, cols, n;
    size_t bytes;
} bench_args;

static int run_copy(void *p) { bench_args *a = p; return gpu->copy(a->b, a->a, a->bytes); }
static int run_dequantize(void *p) { bench_args *a = p; return gpu->dequantize(a->m, a->b); }
static int run_gemv(void *p) { bench_args *a = p; return gpu->gemv(a->m, a->a, a->n, a->b); }
static int run_gemm(void *p) { bench_args *a = p; return gpu->gemm(a->m, a->a, a->n, 0, 0.0f, a->c, a->b); }
static int run_sgemv(void *p) { bench_args *a = p; return gpu->sgemv_dense(a->c, a->rows, a->cols, a->a, a->b); }
static int run_hgemv(void *p) { bench_args *a = p; return gpu->hgemv_dense(a->c, a->rows, a->cols, a->a, a->b); }

/// Median of five timings, microseconds per call.
static double time_us(int (*body)(void *), void *args, int iterations) {
    double t[5];
    for (int r = 0; r < 5; r++) {
        float ms;
        CHECK(gpu->time(body, args, iterations, &ms));
        t[r] = 1000.0 * ms / iterations;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) { double s = t[i]; t[i] = t[j]; t[j] = s; }
    return t[2];
}

static void bench_format(const char *label, lq_qformat f, int64_t rows, int64_t cols) {
    host_matrix m = make_matrix(f, rows, cols);
    lq_cuda_matrix *dm;
    CHECK(gpu->matrix_upload(&m.t, rows, cols, &dm));
    const int64_t numel = rows * cols;
    const size_t out_bytes = sizeof(float) * numel;
    float *d_w = device_floats(NULL, (size_t)numel), *d_copy = device_floats(NULL, (size_t)numel);
    CHECK(gpu->dequantize(dm, d_w));
    bench_args a = {.m = dm, .rows = rows, .cols = cols, .n = 1, .bytes = out_bytes};

    a.a = d_w, a.b = d_copy;
    const double copy = time_us(run_copy, &a, 50);
    a.b = d_w;
    const double deq = time_us(run_dequantize, &a, 50);
    printf("%-5s %5lldx%-5lld dequantize %8.1f us %7.1f GB/s | copy %7.1f GB/s | %.2fx copy\n", label, (long long)rows,
           (long long)cols, deq, out_bytes / deq / 1e3, out_bytes / copy / 1e3, copy / deq);

    float *x = malloc(sizeof(float) * 512 * (size_t)cols);
    for (int64_t i = 0; i < 512 * cols; i++) x[i] = uniform(-1, 1);
    float *d_x = device_floats(x, (size_t)(512 * cols)), *d_y = device_floats(NULL, (size_t)(512 * rows));
    void *d_wh, *d_xh, *d_yh;
    CHECK(gpu->malloc(&d_wh, 2 * (size_t)numel));
    CHECK(gpu->malloc(&d_xh, 2 * (size_t)cols));
    CHECK(gpu->malloc(&d_yh, 2 * (size_t)rows));
    CHECK(gpu->f32_to_f16(d_w, numel, d_wh));
    CHECK(gpu->f32_to_f16(d_x, cols, d_xh));

    a.a = d_x, a.b = d_y, a.n = 1;
    const double ours = time_us(run_gemv, &a, 200);
    a.c = d_w;
    const double sgemv = time_us(run_sgemv, &a, 200);
    a.a = d_xh, a.b = d_yh, a.c = d_wh;
    const double hgemv = time_us(run_hgemv, &a, 200);
    printf("%-5s %5lldx%-5lld gemv       %8.2f us | sgemv fp32 %7.2f us (%.2fx) | gemv fp16 %7.2f us (%.2fx)\n", label,
           (long long)rows, (long long)cols, ours, sgemv, sgemv / ours, hgemv, hgemv / ours);

    a.a = d_x, a.b = d_y, a.c = d_copy, a.n = 512;
    const double gemm = time_us(run_gemm, &a, 20);
    printf("%-5s %5lldx%-5lld gemm 512   %8.1f us %7.1f GFLOP/s (dequantize + cublasSgemm)\n", label, (long long)rows,
           (long long)cols, gemm, 2.0 * 512 * numel / gemm / 1e3);

    void *buffers[] = {d_w, d_copy, d_x, d_y, d_wh, d_xh, d_yh};
    for (size_t k = 0; k < sizeof buffers / sizeof buffers[0]; k++) CHECK(gpu->free(buffers[k]));
    gpu->matrix_free(dm);
    free(x);
    free_matrix(&m);
}

typedef struct {
    const float *q, *k, *v;
    float *out;
    lq_attention_shape shape;
} attention_args;
static int run_attention(void *p) {
    attention_args *a = p;
    return gpu->attention(a->q, a->k, a->v, &a->shape, a->out);
}

/// Decoding attention (one query row per sequence) over a long cache: it reads every cached key and
/// value once, so its effective bandwidth is set beside a device copy of the same bytes.
static void bench_attention(int64_t cached, int64_t heads, int64_t kv_heads, int64_t head_dim) {
    const lq_attention_shape s = {.batch = 1, .length = 1, .start = cached - 1, .capacity = cached, .heads = heads,
                                  .kv_heads = kv_heads, .head_dim = head_dim, .window = 0,
                                  .scale = 1.0f / sqrtf((float)head_dim)};
    const size_t kv = (size_t)(cached * kv_heads * head_dim);
    float *host = random_floats(kv, -1, 1);
    attention_args a = {.q = device_floats(host, (size_t)(heads * head_dim)), .k = device_floats(host, kv),
                        .v = device_floats(host, kv), .out = device_floats(NULL, (size_t)(heads * head_dim)), .shape = s};
    const double t = time_us(run_attention, &a, 100);
    float *copy_to = device_floats(NULL, 2 * kv);
    bench_args c = {.a = a.k, .b = copy_to, .bytes = 2 * kv * sizeof(float)};
    const double copy = time_us(run_copy, &c, 100);
    const double bytes = 2.0 * kv * sizeof(float);
    printf("attention decode, %lld cached, %lld/%lld heads x %lld: %8.2f us %7.1f GB/s | copy %7.1f GB/s | %.2fx copy\n",
           (long long)cached, (long long)heads, (long long)kv_heads, (long long)head_dim, t, bytes / t / 1e3,
           bytes / copy / 1e3, copy / t);
    CHECK(gpu->free((void *)a.q));
    CHECK(gpu->free((void *)a.k));
    CHECK(gpu->free((void *)a.v));
    CHECK(gpu->free(a.out));
    CHECK(gpu->free(copy_to));
    free(host);
}

static void run_bench(void) {
    const lq_qformat nf4 = {4, 64, LQ_SCALES_DYNAMIC8, 8, 256};  // bitsandbytes NF4 with double quantization
    const lq_qformat nf3 = {3, 64, LQ_SCALES_UINT, 8, 256};      // LQ-LoRA's table, 3.127 bits
    const lq_qformat nf2 = {2, 64, LQ_SCALES_UINT, 8, 256};
    const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    for (size_t k = 0; k < 3; k++) bench_format("NF4", nf4, shapes[k][0], shapes[k][1]);
    bench_format("NF3", nf3, 4096, 4096);
    bench_format("NF2", nf2, 4096, 4096);
    bench_attention(2048, 32, 8, 128);  // Llama 3 8B's attention at 2K positions
    bench_attention(8192, 32, 8, 128);
}

int main(int argc, char **argv) {
    char why[1600];
#ifdef LQ_CUDA_CHECK_EMULATED
    gpu = lq_cuda_emulation();
#else
    gpu = lq_cuda_load(why, sizeof why);
#endif
    if (!gpu) {
        printf("cuda-check: skipped: %s\n", why);
        return 77;
    }
    printf("cuda-check: %s, %s (compute %d.%d, %.1f GiB, driver %d, runtime %d)\n", gpu->path, gpu->device.name,
           gpu->device.compute_major, gpu->device.compute_minor, gpu->device.total_memory / 1073741824.0,
           gpu->device.driver_version, gpu->device.runtime_version);
    run_checks();
    check_decoder_ops();
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) run_bench();
    return failures ? 1 : 0;
}
