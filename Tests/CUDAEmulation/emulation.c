// Host emulation of liblqlora_cuda.so (see lq_cuda_emulation.h).
#include "lq_cuda_emulation.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq_activations.h"
#include "lq_device_ops.h"
#include "lq_quant.h"

static _Thread_local char error[256] = "no error";
// Per thread, so a test injecting failures does not touch tests running beside it.
static _Thread_local long calls, fail_at = -1, fail_only = -1;

// The CUDA runtime's state that the library must manage, emulated. `pending` is what
// cudaGetLastError would return: a failed runtime call (an allocation that does not fit) leaves it
// on the thread, and the next kernel launch reports it as its own failure unless it was cleared.
// The library clears it where it handles a failure (fail) and at every entry point (enter), as
// liblqlora_cuda.so does; `keep_errors` stops both, as the library did before, so a test can show
// that it notices. The current device is per thread too (0 until a thread selects one), and a
// launch on another device than the data's fails.
static _Thread_local int pending, keep_errors, current_device;
static int chosen_device;  // lq_cuda_init's choice, 0 until then
enum { emulated_devices = 2 };
static const size_t emulated_capacity = (size_t)16 << 30;  // bytes one allocation may take

static int fail(int code, const char *what, const char *detail) {
    snprintf(error, sizeof error, "%s: %s", what, detail);
    if (!keep_errors) pending = 0;
    return code;
}

/// Counts the call, selects the chosen device, clears a stale error; nonzero when this call is to
/// fail (an injected failure: a runtime call inside it failing, which leaves its error pending).
static int enter(const char *what) {
    long n = calls++;
    current_device = chosen_device;
    if (!keep_errors) pending = 0;
    long at = fail_at;
    if ((at >= 0 && n >= at) || n == fail_only) {
        pending = 2;  // cudaErrorMemoryAllocation
        return fail(2, what, "out of memory (emulated)");
    }
    return 0;
}

/// Returns from the entry point with a nonzero status.
#define TRY(call)             \
    do {                      \
        int e_ = (call);      \
        if (e_) return e_;    \
    } while (0)

/// A kernel launch: the entry point, then the launch's own cudaGetLastError().
static int launch(const char *what) {
    TRY(enter(what));
    if (current_device != chosen_device) return fail(400, what, "launched on another device than its data's (emulated)");
    if (pending) return fail(pending, what, "an earlier call's error, reported at this launch (emulated cudaGetLastError)");
    return 0;
}

void lq_cuda_emulation_fail_after(long n) { fail_at = n < 0 ? -1 : calls + n; }
void lq_cuda_emulation_fail_once(long n) { fail_only = n < 0 ? -1 : calls + n; }
long lq_cuda_emulation_calls(void) { return calls; }
void lq_cuda_emulation_keep_errors(int keep) { keep_errors = keep; }

static int abi_version(void) { return LQ_CUDA_ABI_VERSION; }
static const char *last_error(void) { return error; }

static int init(int device, lq_cuda_device_info *info) {
    if (device < 0 || device >= emulated_devices) {
        char detail[64];
        snprintf(detail, sizeof detail, "device %d requested, %d present", device, (int)emulated_devices);
        return fail(-1, "lq_cuda_init", detail);
    }
    chosen_device = current_device = device;
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->name, sizeof info->name, "host emulation");
        info->total_memory = info->free_memory = emulated_capacity;
    }
    return 0;
}

static int dmalloc(void **p, size_t bytes) {
    TRY(enter("malloc"));
    if (bytes > emulated_capacity) {
        pending = 2;
        return fail(2, "cudaMalloc", "out of memory (emulated)");
    }
    *p = malloc(bytes ? bytes : 1);
    return *p ? 0 : fail(2, "cudaMalloc", "out of host memory");
}
static int dfree(void *p) {
    free(p);
    return 0;
}
static int copy(void *dst, const void *src, size_t bytes) {
    TRY(enter("copy"));
    memcpy(dst, src, bytes);
    return 0;
}
static int synchronize(void) { return 0; }

/// A NormalFloat matrix: the host tensor itself (its buffers belong to the Swift matrix, which
/// outlives this handle). A uniform one: copies of its buffers, as a device holds them.
struct lq_cuda_matrix {
    int uniform;
    lq_qtensor t;
    lq_uniform u;
    int64_t rows, cols;
};

static int matrix_upload(const lq_qtensor *t, int64_t rows, int64_t cols, lq_cuda_matrix **out) {
    TRY(enter("matrix_upload"));
    const char *problem = lq_cuda_matrix_problem(t, rows, cols);
    if (problem) return fail(-1, "lq_cuda_matrix_upload", problem);
    lq_cuda_matrix *m = calloc(1, sizeof *m);
    m->t = *t;
    m->rows = rows;
    m->cols = cols;
    *out = m;
    return 0;
}
static void *copied(const void *src, size_t bytes) {
    if (!src) return NULL;
    void *p = malloc(bytes ? bytes : 1);
    if (p) memcpy(p, src, bytes);
    return p;
}

static void matrix_free(lq_cuda_matrix *m) {
    if (m && m->uniform) {
        free((void *)m->u.codes), free((void *)m->u.scales), free((void *)m->u.zeros), free((void *)m->u.g_idx);
    }
    free(m);
}

static int uniform_upload(const lq_uniform *u, lq_cuda_matrix **out) {
    TRY(enter("uniform_upload"));
    const char *problem = lq_cuda_uniform_problem(u);
    if (problem) return fail(-1, "lq_cuda_uniform_upload", problem);
    const int64_t groups = (u->cols + u->group - 1) / u->group;
    lq_cuda_matrix *m = calloc(1, sizeof *m);
    m->uniform = 1;
    m->rows = u->rows;
    m->cols = u->cols;
    m->u = *u;
    m->u.codes = copied(u->codes, (size_t)(u->rows * u->cols));
    m->u.scales = copied(u->scales, sizeof(float) * (size_t)(groups * u->rows));
    m->u.zeros = copied(u->zeros, sizeof(float) * (size_t)(groups * u->rows));
    m->u.g_idx = copied(u->g_idx, sizeof(int32_t) * (size_t)u->cols);
    *out = m;
    return 0;
}

/// W [rows, cols] as fp32 from its CPU kernels (bit-equal to their scalar references).
static void dequantized(const lq_cuda_matrix *m, float *out) {
    if (m->uniform) lq_uniform_dequantize(&m->u, 0, m->rows, out);
    else lq_dequantize(&m->t, 0, m->t.numel, out);
}

static int dequantize(const lq_cuda_matrix *m, float *out) {
    TRY(launch("dequantize"));
    dequantized(m, out);
    return 0;
}

/// Y = X · Wᵀ (+ beta·Y), or transposed dX = dY · W + beta·dX, through W dequantized.
static int product(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *y) {
    float *w = malloc(sizeof(float) * (size_t)(m->rows * m->cols));
    if (!w) return fail(2, "product", "out of host memory for the dequantized matrix");
    dequantized(m, w);
    const int rows = (int)m->rows, cols = (int)m->cols;
    if (!transposed)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, rows, cols, 1, x, cols, w, cols, beta, y, rows);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, cols, rows, 1, x, rows, w, cols, beta, y, cols);
    free(w);
    return 0;
}
static int gemv(const lq_cuda_matrix *m, const float *x, int64_t n, float *y) {
    TRY(launch("gemv"));
    const char *problem = lq_cuda_gemv_problem(n);
    if (problem) return fail(-1, "lq_cuda_gemv", problem);
    return product(m, x, n, 0, 0, y);
}
static int gemm(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *workspace, float *y) {
    TRY(launch("gemm"));
    (void)workspace;
    return product(m, x, n, transposed, beta, y);
}
static int matmul_host(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *y) {
    TRY(launch("matmul_host"));
    return product(m, x, n, transposed, beta, y);
}

static int dense_matmul(const float *w, int64_t rows, int64_t cols, const float *x, int64_t n, float alpha, float beta, float *y) {
    TRY(launch("dense_matmul"));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, alpha, x, (int)cols, w, (int)cols, beta,
                y, (int)rows);
    return 0;
}
static int rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out) {
    TRY(launch("rms_norm"));
    lq_ref_rms_norm(x, weight, n, width, eps, out);
    return 0;
}
static int add(float *x, const float *y, int64_t count) {
    TRY(launch("add"));
    for (int64_t i = 0; i < count; i++) x[i] += y[i];
    return 0;
}
static int add_bias(float *y, const float *bias, int64_t n, int64_t width) {
    TRY(launch("add_bias"));
    for (int64_t i = 0; i < n * width; i++) y[i] += bias[i % width];
    return 0;
}
static int silu_mul(float *g, const float *u, int64_t count) {
    TRY(launch("silu_mul"));
    lq_silu_mul(g, u, count);
    return 0;
}
static int gather_rows(const float *table, int64_t width, const int32_t *ids, int64_t n, float *out) {
    TRY(launch("gather_rows"));
    for (int64_t i = 0; i < n; i++) memcpy(out + i * width, table + (int64_t)ids[i] * width, sizeof(float) * (size_t)width);
    return 0;
}
static int rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start, int64_t heads,
                int64_t head_dim) {
    TRY(launch("rope"));
    lq_ref_rope(x, cos, sin, batch, length, start, heads, head_dim);
    return 0;
}
/// As the library: one range through the direct kernel (lq_ref_attention), several through split-K
/// and its merge (lq_ref_attention_split).
static int attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *shape,
                           int64_t splits, float *out) {
    TRY(launch("attention"));
    const char *problem = lq_cuda_attention_problem(shape);
    if (!problem) problem = lq_cuda_splits_problem(splits);
    if (problem) return fail(-1, "lq_cuda_attention", problem);
    if (splits == 1)
        lq_ref_attention(q, keys, values, shape, out);
    else
        lq_ref_attention_split(q, keys, values, shape, splits, out);
    return 0;
}
static int attention(const float *q, const float *keys, const float *values, const lq_attention_shape *shape, float *out) {
    return attention_split(q, keys, values, shape, lq_attention_splits(shape), out);
}

static int token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out) {
    TRY(launch("token_nll"));
    lq_ref_token_nll(logits, n, vocab, targets, out);
    return 0;
}

static int not_emulated(void) { return fail(-1, "emulation", "not emulated"); }
static int sgemv_dense(const float *w, int64_t r, int64_t c, const float *x, float *y) {
    (void)w, (void)r, (void)c, (void)x, (void)y;
    return not_emulated();
}
static int hgemv_dense(const uint16_t *w, int64_t r, int64_t c, const uint16_t *x, uint16_t *y) {
    (void)w, (void)r, (void)c, (void)x, (void)y;
    return not_emulated();
}
static int f32_to_f16(const float *in, int64_t count, uint16_t *out) {
    (void)in, (void)count, (void)out;
    return not_emulated();
}
static int time_body(int (*body)(void *), void *context, int iterations, float *ms) {
    (void)body, (void)context, (void)iterations, (void)ms;
    return not_emulated();
}

const lq_cuda_api *lq_cuda_emulation(void) {
    static lq_cuda_api api = {
        .abi_version = abi_version, .init = init, .last_error = last_error, .malloc = dmalloc, .free = dfree,
        .upload = copy, .download = copy, .copy = copy, .synchronize = synchronize, .matrix_upload = matrix_upload,
        .matrix_free = matrix_free, .uniform_upload = uniform_upload, .dequantize = dequantize, .gemv = gemv, .gemm = gemm,
        .matmul_host = matmul_host, .sgemv_dense = sgemv_dense, .hgemv_dense = hgemv_dense, .f32_to_f16 = f32_to_f16,
        .time = time_body, .dense_matmul = dense_matmul, .rms_norm = rms_norm, .add = add, .add_bias = add_bias,
        .silu_mul = silu_mul, .gather_rows = gather_rows, .rope = rope, .attention = attention,
        .attention_split = attention_split, .token_nll = token_nll,
        .device = {.name = "host emulation"}, .path = "(host emulation)",
    };
    return &api;
}

#ifdef LQ_CUDA_EMULATION_EXPORTS
// Built as a shared library with this defined (scripts/test-cuda.sh), the emulation exports the
// real library's names, so `lqlora --device cuda` loads it through the same loader, end to end.
int lq_cuda_abi_version(void) { return abi_version(); }
/// $LQLORA_EMULATION_FAIL_AFTER=N: the loading thread's calls fail after N more (lq_cuda_emulation_fail_after).
int lq_cuda_init(int device, lq_cuda_device_info *info) {
    const char *fail = getenv("LQLORA_EMULATION_FAIL_AFTER");
    if (fail && *fail) lq_cuda_emulation_fail_after(atol(fail));
    return init(device, info);
}
const char *lq_cuda_last_error(void) { return last_error(); }
int lq_cuda_malloc(void **ptr, size_t bytes) { return dmalloc(ptr, bytes); }
int lq_cuda_free(void *ptr) { return dfree(ptr); }
int lq_cuda_upload(void *dst, const void *src, size_t bytes) { return copy(dst, src, bytes); }
int lq_cuda_download(void *dst, const void *src, size_t bytes) { return copy(dst, src, bytes); }
int lq_cuda_copy(void *dst, const void *src, size_t bytes) { return copy(dst, src, bytes); }
int lq_cuda_synchronize(void) { return synchronize(); }
int lq_cuda_matrix_upload(const lq_qtensor *t, int64_t rows, int64_t cols, lq_cuda_matrix **out) {
    return matrix_upload(t, rows, cols, out);
}
int lq_cuda_uniform_upload(const lq_uniform *u, lq_cuda_matrix **out) { return uniform_upload(u, out); }
void lq_cuda_matrix_free(lq_cuda_matrix *m) { matrix_free(m); }
int lq_cuda_dequantize(const lq_cuda_matrix *m, float *out) { return dequantize(m, out); }
int lq_cuda_gemv(const lq_cuda_matrix *m, const float *x, int64_t n, float *y) { return gemv(m, x, n, y); }
int lq_cuda_gemm(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *workspace, float *y) {
    return gemm(m, x, n, transposed, beta, workspace, y);
}
int lq_cuda_matmul_host(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *y) {
    return matmul_host(m, x, n, transposed, beta, y);
}
int lq_cuda_sgemv_dense(const float *w, int64_t rows, int64_t cols, const float *x, float *y) {
    return sgemv_dense(w, rows, cols, x, y);
}
int lq_cuda_hgemv_dense(const uint16_t *w, int64_t rows, int64_t cols, const uint16_t *x, uint16_t *y) {
    return hgemv_dense(w, rows, cols, x, y);
}
int lq_cuda_f32_to_f16(const float *in, int64_t count, uint16_t *out) { return f32_to_f16(in, count, out); }
int lq_cuda_time(int (*body)(void *), void *context, int iterations, float *ms) { return time_body(body, context, iterations, ms); }
int lq_cuda_dense_matmul(const float *w, int64_t rows, int64_t cols, const float *x, int64_t n, float alpha, float beta, float *y) {
    return dense_matmul(w, rows, cols, x, n, alpha, beta, y);
}
int lq_cuda_rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out) {
    return rms_norm(x, weight, n, width, eps, out);
}
int lq_cuda_add(float *x, const float *y, int64_t count) { return add(x, y, count); }
int lq_cuda_add_bias(float *y, const float *bias, int64_t n, int64_t width) { return add_bias(y, bias, n, width); }
int lq_cuda_silu_mul(float *g, const float *u, int64_t count) { return silu_mul(g, u, count); }
int lq_cuda_gather_rows(const float *table, int64_t width, const int32_t *ids, int64_t n, float *out) {
    return gather_rows(table, width, ids, n, out);
}
int lq_cuda_rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start, int64_t heads,
                 int64_t head_dim) {
    return rope(x, cos, sin, batch, length, start, heads, head_dim);
}
int lq_cuda_attention(const float *q, const float *keys, const float *values, const lq_attention_shape *shape, float *out) {
    return attention(q, keys, values, shape, out);
}
int lq_cuda_attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *shape,
                            int64_t splits, float *out) {
    return attention_split(q, keys, values, shape, splits, out);
}
int lq_cuda_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out) {
    return token_nll(logits, n, vocab, targets, out);
}
#endif
