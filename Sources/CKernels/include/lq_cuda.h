// The GPU boundary. The CUDA kernels live in liblqlora_cuda.so (built by scripts/build-cuda.sh from
// Sources/CKernels/cuda/*.cu, never by SwiftPM); this header declares what that library exports and
// the loader that finds it at run time with dlopen. Without the library or a device, the loader says
// why and the caller stays on the CPU kernels.
//
// Matrices use the layouts of lq_quant.h (NormalFloat) and lq_uniform.h (GPTQ / round-to-nearest
// integers); both kinds share one handle type and the same products. Products follow a linear layer: Y[n, rows] = X[n, cols] · Wᵀ
// with X and Y row-major. Every entry point returns 0 on success or a CUDA/cuBLAS status, and
// lq_cuda_last_error() then describes the failure.
#ifndef LQ_CUDA_H
#define LQ_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include "lq_device_ops.h"
#include "lq_quant.h"
#include "lq_uniform.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Bumped whenever an entry point below changes; the loader refuses a library built for another.
#define LQ_CUDA_ABI_VERSION 4

/// Rows of X up to which products use the fused dequantize-GEMV kernel; more rows dequantize W into
/// a device workspace and call cublasSgemm.
#define LQ_CUDA_GEMV_MAX_ROWS 8

/// A quantized matrix resident on the device: NormalFloat (its codes, scales and codebook) or uniform
/// integers (codes, scales, zero points, g_idx).
typedef struct lq_cuda_matrix lq_cuda_matrix;

typedef struct {
    char name[256];
    int compute_major, compute_minor;
    size_t total_memory, free_memory;
    int driver_version, runtime_version;
    int multiprocessors;
    size_t l2_bytes;  // a benchmark exceeds it to measure memory rather than cache
} lq_cuda_device_info;

// ---- What the library accepts, checked identically by it and by the tests' host emulation ----

/// NULL when lq_cuda_matrix_upload takes this matrix, else why not.
static inline const char *lq_cuda_matrix_problem(const lq_qtensor *t, int64_t rows, int64_t cols) {
    const lq_qformat f = t->format;
    if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX) return "rows and cols must be 1 to 2^31 - 1 (cuBLAS takes int)";
    if (rows * cols != t->numel) return "rows x cols differs from numel";
    if (f.bits != 2 && f.bits != 3 && f.bits != 4 && f.bits != 8) return "bits must be 2, 3, 4 or 8";
    if (f.block_size < 1) return "block_size must be positive";
    switch (f.scale_kind) {
        case LQ_SCALES_F32: return NULL;
        case LQ_SCALES_DYNAMIC8:
            if (f.scale_bits != 8) return "dynamic 8-bit scales need scale_bits 8";
            break;
        case LQ_SCALES_UINT:
            if (f.scale_bits != 2 && f.scale_bits != 3 && f.scale_bits != 4 && f.scale_bits != 8)
                return "integer scales need scale_bits 2, 3, 4 or 8";
            break;
        default: return "unknown scale_kind";
    }
    return f.scale_block_size < 1 ? "scale_block_size must be positive" : NULL;
}

/// NULL when lq_cuda_uniform_upload takes this matrix, else why not. Every g_idx entry is checked
/// here, on the host: the kernels index scales and zero points with it unchecked.
static inline const char *lq_cuda_uniform_problem(const lq_uniform *m) {
    if (m->rows < 1 || m->cols < 1 || m->rows > INT32_MAX || m->cols > INT32_MAX) return "rows and cols must be 1 to 2^31 - 1 (cuBLAS takes int)";
    if (m->group < 1) return "group must be positive";
    if (!m->codes || !m->scales || !m->zeros) return "codes, scales and zeros are all needed";
    if (m->g_idx) {
        const int64_t groups = (m->cols + m->group - 1) / m->group;
        for (int64_t c = 0; c < m->cols; c++)
            if (m->g_idx[c] < 0 || m->g_idx[c] >= groups) return "g_idx holds a group outside 0 ..< groups";
    }
    return NULL;
}

/// NULL when lq_cuda_gemv takes n rows of x, else why not.
static inline const char *lq_cuda_gemv_problem(int64_t n) {
    return n < 1 || n > LQ_CUDA_GEMV_MAX_ROWS ? "1 to 8 rows of x" : NULL;
}

/// The most key ranges lq_cuda_attention_split takes (lq_attention_splits stays far below).
#define LQ_CUDA_MAX_ATTENTION_SPLITS 1024

static inline const char *lq_cuda_splits_problem(int64_t splits) {
    return splits < 1 || splits > LQ_CUDA_MAX_ATTENTION_SPLITS ? "splits must be 1 to 1024" : NULL;
}

/// The largest head the attention kernel holds (eight dimensions per lane of a warp).
#define LQ_CUDA_MAX_HEAD_DIM 256

/// NULL when lq_cuda_attention takes this shape, else why not.
static inline const char *lq_cuda_attention_problem(const lq_attention_shape *s) {
    if (s->batch < 0 || s->length < 0 || s->start < 0 || s->window < 0) return "negative batch, length, start or window";
    if (s->head_dim < 1 || s->head_dim > LQ_CUDA_MAX_HEAD_DIM) return "head_dim must be 1 to 256";
    if (s->heads < 1 || s->kv_heads < 1 || s->heads % s->kv_heads) return "heads not a multiple of kv_heads";
    if (s->capacity < s->start + s->length) return "capacity below start + length (keys past the buffer)";
    return NULL;
}

// ---- The library's exports (looked up by name; see LQ_CUDA_SYMBOLS) ----
int lq_cuda_abi_version(void);
/// Selects `device` and creates the cuBLAS handle. Fails when there is no device.
int lq_cuda_init(int device, lq_cuda_device_info *info);
const char *lq_cuda_last_error(void);

int lq_cuda_malloc(void **ptr, size_t bytes);
int lq_cuda_free(void *ptr);
int lq_cuda_upload(void *device_dst, const void *host_src, size_t bytes);
int lq_cuda_download(void *host_dst, const void *device_src, size_t bytes);
int lq_cuda_copy(void *device_dst, const void *device_src, size_t bytes);
int lq_cuda_synchronize(void);

/// Copies a quantized matrix (rows × cols, t->numel = rows · cols) to the device.
int lq_cuda_matrix_upload(const lq_qtensor *t, int64_t rows, int64_t cols, lq_cuda_matrix **out);
/// Copies a uniform-integer matrix (lq_uniform.h: codes, scales, zero points, and g_idx when given)
/// to the device; the handle then multiplies and frees as a NormalFloat matrix's does.
int lq_cuda_uniform_upload(const lq_uniform *m, lq_cuda_matrix **out);
void lq_cuda_matrix_free(lq_cuda_matrix *m);

/// Device pointers: out[0, rows·cols) = W as fp32, bit-exact with the scalar reference
/// (lq_dequantize's, or lq_uniform_dequantize's for a uniform matrix).
int lq_cuda_dequantize(const lq_cuda_matrix *m, float *out);
/// Device pointers: Y[n, rows] = X[n, cols] · Wᵀ, W decoded in registers; 1 ≤ n ≤ LQ_CUDA_GEMV_MAX_ROWS.
int lq_cuda_gemv(const lq_cuda_matrix *m, const float *x, int64_t n, float *y);
/// Device pointers: Y = X · Wᵀ (or, transposed, dX = dY · W + beta·dX for dY [n, rows], dX [n, cols]),
/// through W dequantized into `workspace` (rows · cols floats) and cublasSgemm.
int lq_cuda_gemm(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *workspace,
                 float *y);
/// Host pointers: the product a linear layer needs (fused GEMV for few rows, GEMM otherwise), with
/// the library's own staging buffers; thread-safe. transposed/beta as for lq_cuda_gemm.
int lq_cuda_matmul_host(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *y);

// ---- The decoder's other operations, so activations stay on the device between layers ----
// Device pointers throughout; lq_device_ops.h holds their scalar references (the tests' oracle).

/// Y[n, rows] = alpha · X[n, cols] · Wᵀ + beta · Y for a dense fp32 W [rows, cols] (cublasSgemm).
int lq_cuda_dense_matmul(const float *w, int64_t rows, int64_t cols, const float *x, int64_t n, float alpha, float beta,
                         float *y);
/// out[i, :] = weight · x[i, :] / sqrt(mean(x[i, :]²) + eps) for n rows of `width` (out may not alias x).
int lq_cuda_rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out);
/// x[i] += y[i].
int lq_cuda_add(float *x, const float *y, int64_t count);
/// y[i, :] += bias for n rows of `width`.
int lq_cuda_add_bias(float *y, const float *bias, int64_t n, int64_t width);
/// g[i] = silu(g[i]) · u[i].
int lq_cuda_silu_mul(float *g, const float *u, int64_t count);
/// out[i, :] = table[ids[i], :]; `ids` is a host array of n token ids.
int lq_cuda_gather_rows(const float *table, int64_t width, const int32_t *ids, int64_t n, float *out);
/// Rotate-half RoPE in place on x [batch·length, heads·head_dim]; row t of a sequence is position
/// start + t; cos/sin [positions, head_dim/2] (as transformers computes them).
int lq_cuda_rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start, int64_t heads,
                 int64_t head_dim);


/// out [batch·length, heads·head_dim] = softmax(scale · q·kᵀ under the causal mask)·v per head, with
/// q [batch·length, heads·head_dim] and keys/values [batch, capacity, kv_heads·head_dim]; each
/// (row, head)'s keys in lq_attention_splits(shape) ranges merged at the end (lq_device_ops.h).
int lq_cuda_attention(const float *q, const float *keys, const float *values, const lq_attention_shape *shape, float *out);
/// lq_cuda_attention with `splits` ranges (≥ 1) chosen by the caller (the checks and benchmarks).
int lq_cuda_attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *shape,
                            int64_t splits, float *out);
/// Device logits [n, vocab]; host targets (n ids) and out (n doubles): each row's negative
/// log-likelihood of its target (lq_ref_token_nll), so evaluation never copies logits to the host.
int lq_cuda_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out);

// Anchors for the benchmark, on dense matrices W [rows, cols] on the device.
int lq_cuda_sgemv_dense(const float *w, int64_t rows, int64_t cols, const float *x, float *y);
/// fp16 W, x and y (IEEE half, as uint16 bits), fp32 accumulation (cublasGemmEx).
int lq_cuda_hgemv_dense(const uint16_t *w, int64_t rows, int64_t cols, const uint16_t *x, uint16_t *y);
int lq_cuda_f32_to_f16(const float *in, int64_t count, uint16_t *out);
/// Milliseconds of GPU time for `iterations` calls of `body(context)` (CUDA events), after one warm-up call.
int lq_cuda_time(int (*body)(void *), void *context, int iterations, float *milliseconds);

// ---- The loader (C, in this target) ----

typedef struct {
    int (*abi_version)(void);
    int (*init)(int, lq_cuda_device_info *);
    const char *(*last_error)(void);
    int (*malloc)(void **, size_t);
    int (*free)(void *);
    int (*upload)(void *, const void *, size_t);
    int (*download)(void *, const void *, size_t);
    int (*copy)(void *, const void *, size_t);
    int (*synchronize)(void);
    int (*matrix_upload)(const lq_qtensor *, int64_t, int64_t, lq_cuda_matrix **);
    void (*matrix_free)(lq_cuda_matrix *);
    int (*uniform_upload)(const lq_uniform *, lq_cuda_matrix **);
    int (*dequantize)(const lq_cuda_matrix *, float *);
    int (*gemv)(const lq_cuda_matrix *, const float *, int64_t, float *);
    int (*gemm)(const lq_cuda_matrix *, const float *, int64_t, int, float, float *, float *);
    int (*matmul_host)(const lq_cuda_matrix *, const float *, int64_t, int, float, float *);
    int (*sgemv_dense)(const float *, int64_t, int64_t, const float *, float *);
    int (*hgemv_dense)(const uint16_t *, int64_t, int64_t, const uint16_t *, uint16_t *);
    int (*f32_to_f16)(const float *, int64_t, uint16_t *);
    int (*time)(int (*)(void *), void *, int, float *);
    int (*dense_matmul)(const float *, int64_t, int64_t, const float *, int64_t, float, float, float *);
    int (*rms_norm)(const float *, const float *, int64_t, int64_t, float, float *);
    int (*add)(float *, const float *, int64_t);
    int (*add_bias)(float *, const float *, int64_t, int64_t);
    int (*silu_mul)(float *, const float *, int64_t);
    int (*gather_rows)(const float *, int64_t, const int32_t *, int64_t, float *);
    int (*rope)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, int64_t);
    int (*attention)(const float *, const float *, const float *, const lq_attention_shape *, float *);
    int (*attention_split)(const float *, const float *, const float *, const lq_attention_shape *, int64_t, float *);
    int (*token_nll)(const float *, int64_t, int64_t, const int32_t *, double *);
    lq_cuda_device_info device;
    char path[1024];  // the library that was loaded
} lq_cuda_api;

/// The library file name the loader looks for.
#define LQ_CUDA_LIBRARY_NAME "liblqlora_cuda.so"

/// Finds and opens the library: $LQLORA_CUDA_LIBRARY if set (a file), else liblqlora_cuda.so next
/// to the running executable, else the dynamic linker's search path. Resolves every entry point,
/// checks the ABI version and initialises device 0 (or $LQLORA_CUDA_DEVICE).
/// Returns the API (loaded once per process; later calls return the same result), or NULL with
/// the reason in `why` (library not found, a missing symbol, ABI mismatch, no device).
const lq_cuda_api *lq_cuda_load(char *why, size_t why_size);

#ifdef __cplusplus
}
#endif
#endif
