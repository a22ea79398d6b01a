// Checks every kernel of liblqlora_cuda.so against the CPU scalar reference, then (with --bench)
// measures them against their anchors in the same run. Built by scripts/build-cuda.sh; loads the
// library through the same loader as lqlora (set LQLORA_CUDA_LIBRARY to choose the file).
//
//   cuda-check            correctness: dequantization bit-exact, GEMV/GEMM within 1e-5 of Σ|w·x|, for the
//                         NormalFloat formats and the uniform integers (GPTQ: sequential groups, act-order's
//                         g_idx, symmetric, asymmetric and fractional zero points; aligned and not); the
//                         decoder's other operations against lq_device_ops.h (RoPE bit-exact), split-K
//                         attention at every range count; what the library must refuse; a handled
//                         failure that must not fail the next launch; products from a second thread
//   cuda-check --quick    the same on fewer formats and shapes (for compute-sanitizer, which is slow)
//   cuda-check --bench    plus the benchmarks, each beside the device's own copy bandwidth: dequantization,
//                         NF4/NF3/NF2 and GPTQ's int4 g128 GEMV against cuBLAS SGEMV (fp32) and fp16 GEMV, cached (one matrix)
//                         and streaming (enough distinct matrices to exceed the L2), GEMM (512 rows),
//                         decoding attention split-K against one block per head
//   cuda-check --bench-only   the benchmarks alone
//   --json FILE           writes the benchmark's figures there
// Exit status: 0 all passed, 1 a check failed, 77 no usable library or device (skipped).
//
// Built with -DLQ_CUDA_CHECK_EMULATED and Tests/CUDAEmulation/emulation.c, it runs the same checks
// against the host emulation of the library (scripts/test-cuda.sh): the checker, its references and
// the CPU kernels the emulation uses are then exercised on every machine.
#include <math.h>
#include <pthread.h>
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
static int quick = 0;  // --quick: fewer formats and shapes

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

/// The device's dequantization of dm equals `want` (the scalar reference) bit for bit, into an
/// aligned buffer (the 8-value kernels) and into one a float past it (the any-layout kernels).
static void check_dequantized(const char *name, lq_cuda_matrix *dm, const float *want, int64_t numel) {
    float *d_w = device_floats(NULL, (size_t)numel + 1);
    for (int offset = 0; offset < 2; offset++) {
        CHECK(gpu->dequantize(dm, d_w + offset));
        float *got = download_floats(d_w + offset, (size_t)numel);
        if (memcmp(got, want, sizeof(float) * numel) != 0) {
            for (int64_t i = 0; i < numel; i++)
                if (memcmp(&got[i], &want[i], sizeof(float))) {
                    fprintf(stderr, "FAIL %s dequantize%s: value %lld is %.9g, reference %.9g\n", name,
                            offset ? " (unaligned output)" : "", (long long)i, got[i], want[i]);
                    break;
                }
            failures++;
        }
        free(got);
    }
    CHECK(gpu->free(d_w));
}

/// Products of dm (W = `w`, the scalar dequantization): GEMV for 1-8 rows, GEMM for more, both
/// directions, through the host entry point too, against a double-precision reference; the
/// one-row GEMV also from an x one float past an aligned address (the any-layout kernel).
static void check_products(const char *name, lq_cuda_matrix *dm, const float *w, int64_t rows, int64_t cols) {
    float *d_w = device_floats(NULL, (size_t)(rows * cols));  // the GEMM's workspace
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
            reference_product(w, rows, cols, x, n, transposed, beta, y0, ref, mag);
            char what[200];

            float *d_x = device_floats(NULL, (size_t)(n * in) + 1), *d_y = device_floats(y0, (size_t)(n * out));
            const int gemv = !transposed && n <= LQ_CUDA_GEMV_MAX_ROWS;
            for (int offset = 0; offset < (gemv && n == 1 ? 2 : 1); offset++) {
                CHECK(gpu->upload(d_x + offset, x, sizeof(float) * n * in));
                if (gemv) {
                    CHECK(gpu->gemv(dm, d_x + offset, n, d_y));
                    snprintf(what, sizeof what, "%s gemv n=%lld%s", name, (long long)n, offset ? " (unaligned x)" : "");
                } else {
                    CHECK(gpu->gemm(dm, d_x, n, transposed, beta, d_w, d_y));
                    snprintf(what, sizeof what, "%s gemm%s n=%lld", name, transposed ? " transposed" : "", (long long)n);
                }
                float *y = download_floats(d_y, (size_t)(n * out));
                expect_close(what, y, ref, mag, (size_t)(n * out), 1e-5);
                free(y);
            }

            float *y = malloc(sizeof(float) * n * out);
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
}

static void check_format(lq_qformat f, int64_t rows, int64_t cols) {
    char name[160];
    snprintf(name, sizeof name, "nf%d bs%d scales%d/%d/%d %lldx%lld", f.bits, f.block_size, f.scale_kind, f.scale_bits,
             f.scale_block_size, (long long)rows, (long long)cols);
    host_matrix m = make_matrix(f, rows, cols);
    const int64_t numel = rows * cols;
    lq_cuda_matrix *dm;
    CHECK(gpu->matrix_upload(&m.t, rows, cols, &dm));
    float *want = malloc(sizeof(float) * numel);
    lq_dequantize_level(LQ_LEVEL_SCALAR, &m.t, 0, numel, want);
    check_dequantized(name, dm, want, numel);
    check_products(name, dm, want, rows, cols);
    gpu->matrix_free(dm);
    free(want);
    free_matrix(&m);
}

// ---- Uniform integers (GPTQ / round to nearest, lq_uniform.h) ----

typedef enum { ZEROS_SYMMETRIC, ZEROS_INTEGER, ZEROS_FRACTIONAL } zero_kind;

/// A random uniform matrix: codes below 2^bits, positive scales, zero points as GPTQ's symmetric
/// (2^(bits−1)) or asymmetric ones make them, or L4Q's fractional ones; with act-order, GPTQ's g_idx
/// (the sequential groups of a random column permutation). Every buffer its own allocation.
static lq_uniform make_uniform(int bits, int64_t rows, int64_t cols, int64_t group, int act_order, zero_kind zeros) {
    const int64_t groups = (cols + group - 1) / group, maxq = (1 << bits) - 1;
    uint8_t *codes = malloc((size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) codes[i] = (uint8_t)(next_u64() % (uint64_t)(maxq + 1));
    float *s = malloc(sizeof(float) * groups * rows), *z = malloc(sizeof(float) * groups * rows);
    for (int64_t i = 0; i < groups * rows; i++) {
        s[i] = uniform(0.001f, 0.02f);
        z[i] = zeros == ZEROS_SYMMETRIC ? (float)((maxq + 1) / 2)
             : zeros == ZEROS_INTEGER   ? (float)(next_u64() % (uint64_t)(maxq + 1))
                                        : uniform(0, (float)maxq);
    }
    int32_t *g_idx = NULL;
    if (act_order) {
        int64_t *perm = malloc(sizeof(int64_t) * cols);
        for (int64_t c = 0; c < cols; c++) perm[c] = c;
        for (int64_t c = cols - 1; c > 0; c--) {
            const int64_t j = (int64_t)(next_u64() % (uint64_t)(c + 1)), t = perm[c];
            perm[c] = perm[j], perm[j] = t;
        }
        g_idx = malloc(sizeof(int32_t) * cols);
        for (int64_t i = 0; i < cols; i++) g_idx[perm[i]] = (int32_t)(i / group);
        free(perm);
    }
    return (lq_uniform){.codes = codes, .scales = s, .zeros = z, .rows = rows, .cols = cols, .group = group, .g_idx = g_idx};
}

static void free_uniform(lq_uniform *u) {
    free((void *)u->codes), free((void *)u->scales), free((void *)u->zeros), free((void *)u->g_idx);
}

static void check_uniform(int bits, int64_t rows, int64_t cols, int64_t group, int act_order, zero_kind zeros) {
    static const char *zero_names[] = {"sym", "asym", "fractional zeros"};
    char name[160];
    snprintf(name, sizeof name, "uniform b%d g%lld %s%s %lldx%lld", bits, (long long)group, zero_names[zeros],
             act_order ? " act-order" : "", (long long)rows, (long long)cols);
    lq_uniform u = make_uniform(bits, rows, cols, group, act_order, zeros);
    lq_cuda_matrix *dm;
    CHECK(gpu->uniform_upload(&u, &dm));
    float *want = malloc(sizeof(float) * rows * cols);
    lq_uniform_dequantize_level(LQ_LEVEL_SCALAR, &u, 0, rows, want);
    check_dequantized(name, dm, want, rows * cols);
    check_products(name, dm, want, rows, cols);
    gpu->matrix_free(dm);
    free(want);
    free_uniform(&u);
}

/// Every bit width on each kernel path: the 8-column kernels (sequential groups; act-order's g_idx),
/// the any-layout ones (columns or a group not a multiple of 8, act-order there too), one group per
/// row (GPTQ's group_size −1, and a group wider than the row), partial last groups, a single row.
static void run_uniform_checks(void) {
    const int before = failures;
    typedef struct { int64_t rows, cols, group; int act_order; zero_kind zeros; } uniform_case;
    const uniform_case cases[] = {
        {67, 136, 32, 0, ZEROS_INTEGER},  {67, 136, 136, 0, ZEROS_SYMMETRIC}, {33, 100, 32, 0, ZEROS_INTEGER},
        {64, 96, 20, 0, ZEROS_SYMMETRIC}, {67, 136, 32, 1, ZEROS_INTEGER},    {33, 100, 16, 1, ZEROS_SYMMETRIC},
        {1, 8, 8, 0, ZEROS_INTEGER},      {130, 264, 128, 0, ZEROS_FRACTIONAL}, {5, 3, 2, 1, ZEROS_INTEGER},
        {9, 40, 4096, 0, ZEROS_SYMMETRIC},
    };
    const size_t quick_cases[] = {0, 3, 4, 5};
    const int bits[] = {2, 3, 4, 8}, quick_bits[] = {3, 4};
    const size_t n_cases = quick ? 4 : sizeof cases / sizeof cases[0], n_bits = quick ? 2 : 4;
    int count = 0;
    for (size_t b = 0; b < n_bits; b++)
        for (size_t i = 0; i < n_cases; i++) {
            const uniform_case c = cases[quick ? quick_cases[i] : i];
            check_uniform(quick ? quick_bits[b] : bits[b], c.rows, c.cols, c.group, c.act_order, c.zeros);
            count++;
        }
    printf("cuda-check: %d uniform-integer formats x shapes, %d failures\n", count, failures - before);
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
    // --quick: every kernel (each bit width's 8-value and any-layout paths, each scale storage) on
    // one awkward shape and the smallest.
    const size_t quick_scales[] = {0, 1, 3, 6}, quick_shapes[] = {0, 3};
    const size_t n_scales = quick ? 4 : sizeof scales / sizeof scales[0], n_shapes = quick ? 2 : sizeof shapes / sizeof shapes[0];
    int cases = 0;
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++)
        for (size_t si = 0; si < n_scales; si++)
            for (size_t ki = 0; ki < n_shapes; ki++) {
                const size_t s = quick ? quick_scales[si] : si, k = quick ? quick_shapes[ki] : ki;
                lq_qformat f = scales[s];
                f.bits = bits[b];
                check_format(f, shapes[k][0], shapes[k][1]);
                cases++;
            }
    printf("cuda-check: %d formats x shapes, %d failures\n", cases, failures);
    run_uniform_checks();
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

/// The library's attention (its own choice of key ranges, then 1, 2, 3, 7 and 64 ranges: empty
/// ranges where a row sees fewer keys) and the split-K scalar reference, each against lq_ref_attention.
static void check_attention(lq_attention_shape s) {
    const int64_t qn = s.batch * s.length * s.heads * s.head_dim, kvn = s.batch * s.capacity * s.kv_heads * s.head_dim;
    float *q = random_floats((size_t)qn, -1, 1), *k = random_floats((size_t)kvn, -1, 1), *v = random_floats((size_t)kvn, -1, 1);
    float *want = malloc(sizeof(float) * qn), *split = malloc(sizeof(float) * qn);
    lq_ref_attention(q, k, v, &s, want);
    float *dq = device_floats(q, (size_t)qn), *dk = device_floats(k, (size_t)kvn), *dv = device_floats(v, (size_t)kvn);
    float *dout = device_floats(NULL, (size_t)qn);
    char shape[160], what[220];
    snprintf(shape, sizeof shape, "batch %lld length %lld start %lld heads %lld/%lld dim %lld window %lld", (long long)s.batch,
             (long long)s.length, (long long)s.start, (long long)s.heads, (long long)s.kv_heads, (long long)s.head_dim,
             (long long)s.window);
    const int64_t splits[] = {0, 1, 2, 3, 7, 64};  // 0: the library's choice, lq_attention_splits
    for (size_t i = 0; i < (quick ? 3 : sizeof splits / sizeof splits[0]); i++) {
        const int64_t n = splits[i] ? splits[i] : lq_attention_splits(&s);
        if (splits[i]) CHECK(gpu->attention_split(dq, dk, dv, &s, n, dout));
        else CHECK(gpu->attention(dq, dk, dv, &s, dout));
        float *got = download_floats(dout, (size_t)qn);
        snprintf(what, sizeof what, "attention %s, %lld ranges%s", shape, (long long)n, splits[i] ? "" : " (the library's choice)");
        expect_near(what, got, want, (size_t)qn, 1e-5, 1.0);  // outputs are convex combinations of values in [-1, 1]
        free(got);
        lq_ref_attention_split(q, k, v, &s, n, split);
        snprintf(what, sizeof what, "lq_ref_attention_split %s, %lld ranges", shape, (long long)n);
        expect_near(what, split, want, (size_t)qn, 1e-5, 1.0);
    }
    CHECK(gpu->free(dq)); CHECK(gpu->free(dk)); CHECK(gpu->free(dv)); CHECK(gpu->free(dout));
    free(q), free(k), free(v), free(want), free(split);
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
        // Decoding over long caches, which the library splits: 8 ranges of 256 keys; a window of
        // 700 in 2 ranges.
        {.batch = 1, .length = 1, .start = 2047, .capacity = 2048, .heads = 8, .kv_heads = 2, .head_dim = 128, .window = 0},
        {.batch = 2, .length = 3, .start = 1000, .capacity = 1010, .heads = 4, .kv_heads = 4, .head_dim = 64, .window = 700},
    };
    _Static_assert(LQ_ATTENTION_SPLIT_MIN_KEYS == 256 && LQ_ATTENTION_SPLIT_TARGET_BLOCKS == 512, "the comment above");
    const int64_t chosen[] = {1, 1, 1, 1, 1, 8, 2};  // lq_attention_splits of each
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        lq_attention_shape s = shapes[k];
        s.scale = 1.0f / sqrtf((float)s.head_dim);
        if (lq_attention_splits(&s) != chosen[k]) {
            fprintf(stderr, "FAIL lq_attention_splits of attention shape %zu: %lld, expected %lld\n", k,
                    (long long)lq_attention_splits(&s), (long long)chosen[k]);
            failures++;
        }
        check_attention(s);
    }
    printf("cuda-check: decoder operations (dense product, RMSNorm, add, bias, SwiGLU, lookup, RoPE, token NLL, 7 attention "
           "shapes at up to 6 range counts), %d failures\n",
           failures - before);
}

// ---- What the library must refuse, and what a failure must not leave behind ----

/// A small NF4 product on the device with its reference, for checks that need any working launch.
typedef struct {
    host_matrix m;
    lq_cuda_matrix *dm;
    float *x, *d_x, *d_y;
    double want[64], magnitude[64];
} small_product;

static small_product small_product_make(void) {
    small_product p = {.m = make_matrix((lq_qformat){4, 64, LQ_SCALES_UINT, 8, 256}, 64, 96)};
    CHECK(gpu->matrix_upload(&p.m.t, 64, 96, &p.dm));
    p.x = random_floats(96, -1, 1);
    float *w = malloc(sizeof(float) * 64 * 96);
    lq_dequantize_level(LQ_LEVEL_SCALAR, &p.m.t, 0, 64 * 96, w);
    reference_product(w, 64, 96, p.x, 1, 0, 0, NULL, p.want, p.magnitude);
    free(w);
    p.d_x = device_floats(p.x, 96);
    p.d_y = device_floats(NULL, 64);
    return p;
}

/// Runs the product (on this thread); its status, and `what` failed unless it ran and is right.
static int small_product_run(small_product *p, const char *what) {
    const int status = gpu->gemv(p->dm, p->d_x, 1, p->d_y);
    if (status) {
        fprintf(stderr, "FAIL %s: the product failed: %s\n", what, gpu->last_error());
        failures++;
        return status;
    }
    float *y = download_floats(p->d_y, 64);
    expect_close(what, y, p->want, p->magnitude, 64, 1e-5);
    free(y);
    return 0;
}

static void small_product_free(small_product *p) {
    CHECK(gpu->free(p->d_x));
    CHECK(gpu->free(p->d_y));
    gpu->matrix_free(p->dm);
    free(p->x);
    free_matrix(&p->m);
}

/// `status` must be a refusal whose message names `needle`; the next launch must still work.
static void expect_refused(const char *what, int status, const char *needle, small_product *after) {
    if (status == 0) {
        fprintf(stderr, "FAIL %s: accepted; the library must refuse it\n", what);
        failures++;
    } else if (!strstr(gpu->last_error(), needle)) {
        fprintf(stderr, "FAIL %s: refused with \"%s\", which does not name %s\n", what, gpu->last_error(), needle);
        failures++;
    }
    char next[200];
    snprintf(next, sizeof next, "the product after refusing %s", what);
    small_product_run(after, next);
}

/// The emulation refuses exactly what the library does (lq_cuda.h's checks, shared by both), so CI
/// fails where a GPU would fall back to the CPU.
static void check_refusals(void) {
    const int before = failures;
    small_product p = small_product_make();
    lq_cuda_matrix *dm = NULL;
    lq_qtensor t = p.m.t;
    t.format.scale_bits = 5;
    expect_refused("a matrix with 5-bit integer scales", gpu->matrix_upload(&t, 64, 96, &dm), "scale_bits", &p);
    t = p.m.t;
    t.format.scale_kind = LQ_SCALES_DYNAMIC8, t.format.scale_bits = 4;
    expect_refused("a matrix with 4-bit dynamic scales", gpu->matrix_upload(&t, 64, 96, &dm), "scale_bits", &p);
    t = p.m.t;
    expect_refused("a 64x97 matrix of 6144 values", gpu->matrix_upload(&t, 64, 97, &dm), "numel", &p);
    t.format.bits = 5;
    expect_refused("a matrix of 5-bit codes", gpu->matrix_upload(&t, 64, 96, &dm), "bits", &p);
    t = p.m.t;
    t.format.block_size = 0;
    expect_refused("a matrix with blocks of 0", gpu->matrix_upload(&t, 64, 96, &dm), "block_size", &p);
    expect_refused("a GEMV of 9 rows", gpu->gemv(p.dm, p.d_x, 9, p.d_y), "rows of x", &p);

    lq_uniform u = make_uniform(4, 16, 64, 16, 1, ZEROS_INTEGER), bad = u;
    bad.group = 0;
    expect_refused("a uniform matrix with groups of 0", gpu->uniform_upload(&bad, &dm), "group", &p);
    bad = u, bad.cols = 0;
    expect_refused("a uniform matrix of 0 columns", gpu->uniform_upload(&bad, &dm), "cols", &p);
    int32_t *g_idx = (int32_t *)u.g_idx;
    g_idx[63] = 4;  // 64 columns in groups of 16: groups 0 to 3
    expect_refused("a g_idx naming group 4 of 4", gpu->uniform_upload(&u, &dm), "g_idx", &p);
    g_idx[63] = -1;
    expect_refused("a g_idx naming group -1", gpu->uniform_upload(&u, &dm), "g_idx", &p);
    free_uniform(&u);

    const lq_attention_shape ok = {.batch = 1, .length = 1, .start = 0, .capacity = 1, .heads = 4, .kv_heads = 2,
                                   .head_dim = 64, .window = 0, .scale = 0.125f};
    float *d = device_floats(NULL, 6 * 320);  // large enough for every shape below (none is read)
    lq_attention_shape s = ok;
    s.head_dim = 320;
    expect_refused("attention with head_dim 320", gpu->attention(d, d, d, &s, d), "head_dim", &p);
    s = ok, s.heads = 6, s.kv_heads = 4;
    expect_refused("attention with 6 heads over 4 kv_heads", gpu->attention(d, d, d, &s, d), "kv_heads", &p);
    s = ok, s.start = 1;
    expect_refused("attention past its cache's capacity", gpu->attention(d, d, d, &s, d), "capacity", &p);
    expect_refused("attention in 0 ranges", gpu->attention_split(d, d, d, &ok, 0, d), "splits", &p);
    CHECK(gpu->free(d));
    small_product_free(&p);
    printf("cuda-check: refusals (scale bits, element count, code bits, block size, GEMV rows, uniform groups, columns and "
           "g_idx, head_dim, kv_heads, capacity, ranges), each followed by a working product, %d failures\n", failures - before);
}

/// A failed runtime call (an allocation that does not fit) stays recorded on the thread, and CUDA
/// reports it at the next launch's cudaGetLastError unless the library cleared it: after a refused
/// 1 PiB allocation, a product must still run.
static void check_after_failure(void) {
    const int before = failures;
    small_product p = small_product_make();
    void *huge = NULL;
    if (gpu->malloc(&huge, (size_t)1 << 50) == 0) {
        fprintf(stderr, "FAIL a 1 PiB allocation succeeded\n");
        failures++;
        CHECK(gpu->free(huge));
    }
    small_product_run(&p, "the product after a failed allocation");
#ifdef LQ_CUDA_CHECK_EMULATED
    // The emulation keeping the error, as the library did before it cleared: the launch must fail
    // then, or the check above proves nothing.
    lq_cuda_emulation_keep_errors(1);
    const int refused = gpu->malloc(&huge, (size_t)1 << 50) != 0;
    const int ran = gpu->gemv(p.dm, p.d_x, 1, p.d_y) == 0;
    lq_cuda_emulation_keep_errors(0);
    if (!refused || ran) {
        fprintf(stderr, "FAIL the emulation with its errors kept: the launch after a failed allocation %s\n",
                ran ? "ran (its pending error is not emulated)" : "was not reached");
        failures++;
    }
#endif
    small_product_free(&p);
    printf("cuda-check: a product after a failed allocation, %d failures\n", failures - before);
}

typedef struct {
    small_product *p;
    int status;
} thread_job;

static void *product_on_thread(void *job) {
    thread_job *j = job;
    j->status = small_product_run(j->p, "a product from a second thread");
    return NULL;
}

/// The current device is per thread (device 0 for a thread that never chose): a product from a
/// thread that did not load the library must run on the library's device. The emulated library
/// takes the second of two devices, so there a thread left on device 0 fails.
static void check_other_thread(void) {
    const int before = failures;
    small_product p = small_product_make();
    thread_job job = {.p = &p};
    pthread_t thread;
    if (pthread_create(&thread, NULL, product_on_thread, &job) != 0) {
        fprintf(stderr, "FAIL pthread_create\n");
        exit(1);
    }
    pthread_join(thread, NULL);
    small_product_free(&p);
    printf("cuda-check: a product from a second thread, %d failures\n", failures - before);
}

// ---- Benchmark ----
// Every figure stands beside the device's copy bandwidth measured in the same run. A kernel timed
// on one matrix many times in a row reads it from the L2 (50-60 MB on an H100/H200) after the first
// call: the "cached" figure. The "streaming" one rotates through enough distinct copies to pass four
// times the L2, as a model's layers do, so every call reads device memory.

typedef struct {
    char key[96];
    double value;
} figure;
static figure figures[160];
static int figure_count;

static void record(const char *prefix, const char *name, double value) {
    if (figure_count == (int)(sizeof figures / sizeof figures[0])) return;
    snprintf(figures[figure_count].key, sizeof figures[0].key, "%s%s%s", prefix, *prefix ? "_" : "", name);
    figures[figure_count++].value = value;
}

/// How many distinct copies of `bytes` each together pass four times the L2 (at least 2).
static int copies_past_l2(size_t bytes) {
    const size_t l2 = gpu->device.l2_bytes ? gpu->device.l2_bytes : (size_t)64 << 20;
    const size_t n = (4 * l2 + bytes - 1) / bytes;
    return n < 2 ? 2 : (int)n;
}

/// What a benchmark body needs: `count` matrices (quantized or dense) taken in turn, one per call.
typedef struct {
    lq_cuda_matrix **m;
    void **w;
    int count, next;
    const void *x;
    void *y, *workspace;
    int64_t rows, cols, n;
    size_t bytes;
} rotation;

static int take(rotation *r) {
    const int i = r->next;
    r->next = (r->next + 1) % r->count;
    return i;
}
static int run_copy(void *p) { rotation *r = p; return gpu->copy(r->y, r->x, r->bytes); }
static int run_dequantize(void *p) { rotation *r = p; return gpu->dequantize(r->m[take(r)], r->y); }
static int run_gemv(void *p) { rotation *r = p; return gpu->gemv(r->m[take(r)], r->x, r->n, r->y); }
static int run_gemm(void *p) { rotation *r = p; return gpu->gemm(r->m[take(r)], r->x, r->n, 0, 0.0f, r->workspace, r->y); }
static int run_sgemv(void *p) { rotation *r = p; return gpu->sgemv_dense(r->w[take(r)], r->rows, r->cols, r->x, r->y); }
static int run_hgemv(void *p) { rotation *r = p; return gpu->hgemv_dense(r->w[take(r)], r->rows, r->cols, r->x, r->y); }

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

/// The cached and the streaming time of `body` over r's matrices (r->count of them).
static void time_both(int (*body)(void *), rotation *r, int iterations, double *cached, double *streaming) {
    const int count = r->count;
    r->count = 1, r->next = 0;
    *cached = time_us(body, r, iterations);
    r->count = count, r->next = 0;
    *streaming = time_us(body, r, iterations);
}

/// The device's memory bandwidth: a 512 MiB device-to-device copy, bytes read plus bytes written.
static double copy_bandwidth(void) {
    const size_t bytes = (size_t)512 << 20;
    void *from, *to;
    CHECK(gpu->malloc(&from, bytes));
    CHECK(gpu->malloc(&to, bytes));
    rotation r = {.x = from, .y = to, .bytes = bytes};
    const double t = time_us(run_copy, &r, 20);
    CHECK(gpu->free(from));
    CHECK(gpu->free(to));
    const double gbps = 2.0 * bytes / t / 1e3;
    printf("device copy, 512 MiB: %.1f us, %.0f GB/s (read + write); L2 %.0f MiB, %d multiprocessors\n", t, gbps,
           gpu->device.l2_bytes / 1048576.0, gpu->device.multiprocessors);
    record("", "copy_GBps", gbps);
    record("", "l2_MiB", gpu->device.l2_bytes / 1048576.0);
    return gbps;
}

/// Bytes a matrix occupies on the device: codes, scales, codebook.
static size_t stored_bytes(lq_qformat f, int64_t numel) {
    const int64_t blocks = lq_num_blocks(numel, f.block_size);
    size_t bytes = lq_packed_bytes(f.bits, numel) + sizeof(float) * ((size_t)1 << f.bits);
    if (f.scale_kind == LQ_SCALES_F32) return bytes + sizeof(float) * (size_t)blocks;
    bytes += sizeof(float) * (size_t)((blocks + f.scale_block_size - 1) / f.scale_block_size);
    if (f.scale_kind == LQ_SCALES_DYNAMIC8) return bytes + (size_t)blocks + sizeof(float) * LQ_DYNAMIC8_MAP_SIZE;
    return bytes + lq_packed_bytes(f.scale_bits, blocks);
}

/// "18.2 us, 4213 GB/s (0.88 of copy)": a streaming time with the bandwidth it reaches.
static void print_streaming(double us, double bytes, double copy_gbps) {
    printf("%8.2f us %6.0f GB/s (%.2f of copy)", us, bytes / us / 1e3, bytes / us / 1e3 / copy_gbps);
}

/// Dequantization, GEMV (cached and streaming) and a 512-row GEMM over `count` device copies of one
/// matrix of `stored` bytes, beside cuBLAS's fp32 and fp16 GEMV on the same matrix dense.
static void bench_matrices(const char *label, lq_cuda_matrix **dm, int count, size_t stored, int64_t rows, int64_t cols,
                           double copy_gbps) {
    char key[64];
    snprintf(key, sizeof key, "%s_%lldx%lld", label, (long long)rows, (long long)cols);
    for (char *c = key; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    const int64_t numel = rows * cols;
    float *d_w = device_floats(NULL, (size_t)numel);
    rotation r = {.m = dm, .count = count, .y = d_w};
    double cached, streaming;
    time_both(run_dequantize, &r, 50, &cached, &streaming);
    printf("%-4s %5lldx%-5lld dequantize, streaming over %d matrices (%.0f MB):", label, (long long)rows, (long long)cols, count,
           count * stored / 1e6);
    print_streaming(streaming, (double)stored + sizeof(float) * numel, copy_gbps);
    printf("; cached %.2f us\n", cached);
    record(key, "dequantize_streaming_us", streaming);

    float *x = random_floats(512 * (size_t)cols, -1, 1);
    float *d_x = device_floats(x, (size_t)(512 * cols)), *d_y = device_floats(NULL, (size_t)(512 * rows));
    r.x = d_x, r.y = d_y, r.n = 1;
    time_both(run_gemv, &r, 200, &cached, &streaming);
    const double gemv_bytes = (double)stored + sizeof(float) * (rows + cols);
    printf("%-4s %5lldx%-5lld gemv       cached %8.2f us | streaming", label, (long long)rows, (long long)cols, cached);
    print_streaming(streaming, gemv_bytes, copy_gbps);
    printf("\n");
    record(key, "gemv_cached_us", cached);
    record(key, "gemv_streaming_us", streaming);
    record(key, "gemv_streaming_of_copy", gemv_bytes / streaming / 1e3 / copy_gbps);
    const double ours = streaming;

    // The anchors: cuBLAS on the same matrix dense, fp32 and fp16, as many copies as pass the L2.
    CHECK(gpu->dequantize(dm[0], d_w));
    const int dense_counts[2] = {copies_past_l2(sizeof(float) * numel), copies_past_l2(2 * (size_t)numel)};
    void *d_xh, *d_yh;
    CHECK(gpu->malloc(&d_xh, 2 * (size_t)cols));
    CHECK(gpu->malloc(&d_yh, 2 * (size_t)rows));
    CHECK(gpu->f32_to_f16(d_x, cols, d_xh));
    for (int half = 0; half < 2; half++) {
        const int n = dense_counts[half];
        void **w = malloc(sizeof *w * n);
        for (int i = 0; i < n; i++) {
            CHECK(gpu->malloc(&w[i], (half ? 2 : 4) * (size_t)numel));
            if (half) CHECK(gpu->f32_to_f16(d_w, numel, w[i]));
            else CHECK(gpu->copy(w[i], d_w, sizeof(float) * numel));
        }
        rotation d = {.w = w, .count = n, .x = half ? d_xh : (void *)d_x, .y = half ? d_yh : (void *)d_y, .rows = rows, .cols = cols};
        time_both(half ? run_hgemv : run_sgemv, &d, 200, &cached, &streaming);
        const double bytes = (half ? 2.0 : 4.0) * (numel + rows + cols);
        printf("%-4s %5lldx%-5lld %s cached %8.2f us | streaming", label, (long long)rows, (long long)cols,
               half ? "gemv fp16 " : "sgemv fp32", cached);
        print_streaming(streaming, bytes, copy_gbps);
        printf(" | ours %.2fx faster streaming\n", streaming / ours);
        record(key, half ? "hgemv_fp16_streaming_us" : "sgemv_fp32_streaming_us", streaming);
        for (int i = 0; i < n; i++) CHECK(gpu->free(w[i]));
        free(w);
    }

    r.x = d_x, r.y = d_y, r.n = 512, r.workspace = d_w, r.count = 1, r.next = 0;
    const double gemm = time_us(run_gemm, &r, 20);
    printf("%-4s %5lldx%-5lld gemm 512   %8.1f us %7.1f GFLOP/s (dequantize + cublasSgemm)\n", label, (long long)rows,
           (long long)cols, gemm, 2.0 * 512 * numel / gemm / 1e3);
    record(key, "gemm512_us", gemm);

    CHECK(gpu->free(d_w)); CHECK(gpu->free(d_x)); CHECK(gpu->free(d_y)); CHECK(gpu->free(d_xh)); CHECK(gpu->free(d_yh));
    free(x);
}

static void bench_format(const char *label, lq_qformat f, int64_t rows, int64_t cols, double copy_gbps) {
    host_matrix m = make_matrix(f, rows, cols);
    const size_t stored = stored_bytes(f, rows * cols);
    const int count = copies_past_l2(stored);
    lq_cuda_matrix **dm = malloc(sizeof *dm * count);
    for (int i = 0; i < count; i++) CHECK(gpu->matrix_upload(&m.t, rows, cols, &dm[i]));
    bench_matrices(label, dm, count, stored, rows, cols, copy_gbps);
    for (int i = 0; i < count; i++) gpu->matrix_free(dm[i]);
    free(dm);
    free_matrix(&m);
}

/// A GPTQ-style matrix (symmetric, groups of `group`; act-order's g_idx when asked) on the device:
/// a byte per code, fp32 scales and zero points per group and row.
static void bench_uniform(const char *label, int bits, int64_t group, int act_order, int64_t rows, int64_t cols, double copy_gbps) {
    lq_uniform u = make_uniform(bits, rows, cols, group, act_order, ZEROS_SYMMETRIC);
    const int64_t groups = (cols + group - 1) / group;
    const size_t stored = (size_t)(rows * cols) + 2 * sizeof(float) * (size_t)(groups * rows) + (act_order ? sizeof(int32_t) * (size_t)cols : 0);
    const int count = copies_past_l2(stored);
    lq_cuda_matrix **dm = malloc(sizeof *dm * count);
    for (int i = 0; i < count; i++) CHECK(gpu->uniform_upload(&u, &dm[i]));
    bench_matrices(label, dm, count, stored, rows, cols, copy_gbps);
    for (int i = 0; i < count; i++) gpu->matrix_free(dm[i]);
    free(dm);
    free_uniform(&u);
}

typedef struct {
    const float *q;
    float **k, **v;
    int count, next;
    float *out;
    lq_attention_shape shape;
    int64_t splits;
} attention_rotation;

static int run_attention(void *p) {
    attention_rotation *a = p;
    const int i = a->next;
    a->next = (a->next + 1) % a->count;
    return gpu->attention_split(a->q, a->k[i], a->v[i], &a->shape, a->splits, a->out);
}

/// Decoding attention (one query row per sequence) over a long cache reads every cached key and
/// value once: split-K (the library's choice of ranges) against one block per (row, head), both
/// streaming through as many caches as pass the L2 (one per layer, as in a model).
static void bench_attention(int64_t cached, int64_t heads, int64_t kv_heads, int64_t head_dim, double copy_gbps) {
    const lq_attention_shape s = {.batch = 1, .length = 1, .start = cached - 1, .capacity = cached, .heads = heads,
                                  .kv_heads = kv_heads, .head_dim = head_dim, .window = 0,
                                  .scale = 1.0f / sqrtf((float)head_dim)};
    const size_t kv = (size_t)(cached * kv_heads * head_dim);
    const double bytes = 2.0 * kv * sizeof(float);
    float *host = random_floats(kv, -1, 1);
    attention_rotation a = {.q = device_floats(host, (size_t)(heads * head_dim)), .count = copies_past_l2((size_t)bytes),
                            .out = device_floats(NULL, (size_t)(heads * head_dim)), .shape = s,
                            .splits = lq_attention_splits(&s)};
    a.k = malloc(sizeof(float *) * a.count), a.v = malloc(sizeof(float *) * a.count);
    for (int i = 0; i < a.count; i++) a.k[i] = device_floats(host, kv), a.v[i] = device_floats(host, kv);
    const int count = a.count;
    a.count = 1;
    const double split_cached = time_us(run_attention, &a, 100);
    a.count = count, a.next = 0;
    const double split = time_us(run_attention, &a, 100);
    const int64_t splits = a.splits;
    a.splits = 1, a.next = 0;
    const double one = time_us(run_attention, &a, 100);
    printf("attention decode, %lld cached, %lld/%lld heads x %lld, streaming over %d caches: split-K (%lld ranges)", (long long)cached,
           (long long)heads, (long long)kv_heads, (long long)head_dim, count, (long long)splits);
    print_streaming(split, bytes, copy_gbps);
    printf(", cached %.2f us | one block per head", split_cached);
    print_streaming(one, bytes, copy_gbps);
    printf(" | split-K %.2fx faster\n", one / split);
    char key[64];
    snprintf(key, sizeof key, "attention_decode_%lld", (long long)cached);
    record(key, "split_streaming_us", split);
    record(key, "unsplit_streaming_us", one);
    record(key, "split_ranges", (double)splits);
    for (int i = 0; i < count; i++) {
        CHECK(gpu->free(a.k[i]));
        CHECK(gpu->free(a.v[i]));
    }
    CHECK(gpu->free((void *)a.q));
    CHECK(gpu->free(a.out));
    free(a.k), free(a.v), free(host);
}

static void run_bench(void) {
    const double copy = copy_bandwidth();
    const lq_qformat nf4 = {4, 64, LQ_SCALES_DYNAMIC8, 8, 256};  // bitsandbytes NF4 with double quantization
    const lq_qformat nf3 = {3, 64, LQ_SCALES_UINT, 8, 256};      // LQ-LoRA's table, 3.127 bits
    const lq_qformat nf2 = {2, 64, LQ_SCALES_UINT, 8, 256};
    const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    for (size_t k = 0; k < 3; k++) bench_format("NF4", nf4, shapes[k][0], shapes[k][1], copy);
    bench_format("NF3", nf3, 4096, 4096, copy);
    bench_format("NF2", nf2, 4096, 4096, copy);
    // GPTQ's int4 with groups of 128 (one code per byte on the device), and with act-order.
    bench_uniform("INT4g128", 4, 128, 0, 4096, 4096, copy);
    bench_uniform("INT4g128", 4, 128, 0, 11008, 4096, copy);
    bench_uniform("INT4g128act", 4, 128, 1, 4096, 4096, copy);
    bench_attention(2048, 32, 8, 128, copy);  // Llama 3 8B's attention at 2K positions
    bench_attention(8192, 32, 8, 128, copy);
}

/// --json FILE: the device and every benchmark figure, for the device check's report.
static void write_json(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cuda-check: cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "{\"device\": \"%s\", \"compute\": \"%d.%d\", \"total_memory\": %zu, \"multiprocessors\": %d, \"l2_bytes\": %zu,\n",
            gpu->device.name, gpu->device.compute_major, gpu->device.compute_minor, gpu->device.total_memory,
            gpu->device.multiprocessors, gpu->device.l2_bytes);
    fprintf(f, " \"failures\": %d, \"figures\": {", failures);
    for (int i = 0; i < figure_count; i++) fprintf(f, "%s\n  \"%s\": %.6g", i ? "," : "", figures[i].key, figures[i].value);
    fprintf(f, "}}\n");
    fclose(f);
}

int main(int argc, char **argv) {
    int bench = 0, checks = 1;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bench") == 0) bench = 1;
        else if (strcmp(argv[i], "--bench-only") == 0) bench = 1, checks = 0;
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i];
        else {
            fprintf(stderr, "usage: cuda-check [--quick] [--bench | --bench-only] [--json FILE]\n");
            return 2;
        }
    }
    char why[1600];
#ifdef LQ_CUDA_CHECK_EMULATED
    gpu = lq_cuda_emulation();
    // The second of the emulation's two devices, so that a thread left on device 0 fails.
    lq_cuda_device_info info;
    if (gpu->init(1, &info) != 0) {
        fprintf(stderr, "cuda-check: the emulation's init failed: %s\n", gpu->last_error());
        return 1;
    }
#else
    gpu = lq_cuda_load(why, sizeof why);
#endif
    if (!gpu) {
        printf("cuda-check: skipped: %s\n", why);
        return 77;
    }
    printf("cuda-check: %s, %s (compute %d.%d, %.1f GiB, driver %d, runtime %d)%s\n", gpu->path, gpu->device.name,
           gpu->device.compute_major, gpu->device.compute_minor, gpu->device.total_memory / 1073741824.0,
           gpu->device.driver_version, gpu->device.runtime_version, quick ? ", quick" : "");
    if (checks) {
        run_checks();
        check_decoder_ops();
        check_refusals();
        check_after_failure();
        check_other_thread();
    }
    if (bench) run_bench();
    if (json) write_json(json);
    printf("cuda-check: %d failures\n", failures);
    return failures ? 1 : 0;
}
