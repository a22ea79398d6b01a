// CUDA kernels for the NormalFloat layouts of lq_quant.h and the uniform integers of lq_uniform.h
// (GPTQ / round to nearest): dequantization (bit-exact with the C scalar references: the arithmetic
// comes from lq_layout.h), a fused dequantize-GEMV for 1-8 rows of x, and dequantize-then-cublasSgemm
// for more. Built into liblqlora_cuda.so by scripts/build-cuda.sh;
// the entry points are declared in lq_cuda.h and found at run time by the loader.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <type_traits>

#include "lq_cuda.h"

// The layout the C side compiled must be the one we see (the loader holds the same checks).
static_assert(sizeof(lq_qformat) == 20, "lq_qformat layout");
static_assert(offsetof(lq_qtensor, numel) == 24 && offsetof(lq_qtensor, codes) == 32 &&
                  offsetof(lq_qtensor, group_absmax) == 72 && offsetof(lq_qtensor, scale_offset) == 80 &&
                  sizeof(lq_qtensor) == 88,
              "lq_qtensor layout");
static_assert(offsetof(lq_uniform, rows) == 24 && offsetof(lq_uniform, g_idx) == 48 && sizeof(lq_uniform) == 56,
              "lq_uniform layout");

namespace {

thread_local char last_error[512] = "no error";

// The CUDA runtime records a failed call (an out-of-memory cudaMalloc, say) on the calling thread,
// and the next launch's cudaGetLastError() reports it although that launch worked. Every failure
// here is either returned through fail() (the caller handles it: the matrix stays on the CPU) or
// deliberately ignored through ignore(), and both clear it; enter() also clears, at the start of
// every entry point, whatever a library we call (cuBLAS) may have left. Sticky errors (a faulted
// context) stay whatever we do: cudaGetLastError cannot clear those, and every later call fails.
int fail(int code, const char *what, const char *detail) {
    snprintf(last_error, sizeof last_error, "%s: %s", what, detail);
    (void)cudaGetLastError();
    return code ? code : -1;
}

void ignore(cudaError_t e) {
    if (e != cudaSuccess) (void)cudaGetLastError();
}

// The current device is per host thread, and a thread that never chose one uses device 0: every
// entry point selects the device lq_cuda_init chose ($LQLORA_CUDA_DEVICE), once per thread.
int chosen_device = -1;
thread_local int thread_device = -1;

int enter() {
    if (chosen_device < 0) return fail(-1, "liblqlora_cuda", "lq_cuda_init was not called");
    if (thread_device != chosen_device) {
        const cudaError_t e = cudaSetDevice(chosen_device);
        if (e != cudaSuccess) return fail((int)e, "cudaSetDevice", cudaGetErrorString(e));
        thread_device = chosen_device;
    }
    (void)cudaGetLastError();
    return 0;
}

#define CUDA_TRY(call)                                                                         \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) return fail((int)e_, #call, cudaGetErrorString(e_));            \
    } while (0)
#define ENTER()                        \
    do {                               \
        if (int e_ = enter()) return e_; \
    } while (0)
#define BLAS_TRY(call)                                                                         \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS) return fail((int)s_, #call, cublasGetStatusString(s_)); \
    } while (0)

cublasHandle_t blas = nullptr;

/// What a kernel needs of a matrix, passed by value. Shifts replace 64-bit divisions when the block
/// and group sizes are powers of two (they are for every configuration in the table).
struct QView {
    int bits, block_size, scale_kind, scale_bits, scale_block_size;
    int block_shift, group_shift;  // log2 of the sizes, or -1
    int64_t numel;
    const uint8_t *codes;
    const float *codebook;
    const float *absmax;
    const uint8_t *scale_codes;
    const float *scale_map;
    const float *group_absmax;
    float scale_offset;
};

int log2_exact(int v) {
    for (int s = 0; s < 31; s++)
        if ((1 << s) == v) return s;
    return -1;
}

__device__ __forceinline__ int64_t divide(int64_t v, int size, int shift) { return shift >= 0 ? v >> shift : v / size; }

/// The fp32 absmax of block b, rounded exactly as lq_block_scales does on the CPU.
__device__ __forceinline__ float block_scale(const QView &q, int64_t b) {
    if (q.scale_kind == LQ_SCALES_F32) return __ldg(q.absmax + b);
    const float ga = __ldg(q.group_absmax + divide(b, q.scale_block_size, q.group_shift));
    if (q.scale_kind == LQ_SCALES_DYNAMIC8) return lq_dynamic8_scale(__ldg(q.scale_map + __ldg(q.scale_codes + b)), ga, q.scale_offset);
    return lq_uint_scale(lq_code_at(q.scale_codes, q.scale_bits, b), lq_uint_step(q.scale_bits, ga), ga, q.scale_offset);
}

/// The eight codes [i0, i0 + 8) for i0 a multiple of 8 (so they start on a byte, and on a 3-bit
/// group). Device code buffers are padded, so a short last chunk reads zeros, never past the end.
template <int BITS>
__device__ __forceinline__ void load8(const uint8_t *codes, int64_t i0, uint32_t c[8]) {
    if (BITS == 4) {
        const uint32_t w = __ldg(reinterpret_cast<const unsigned int *>(codes + i0 / 2));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t byte = (w >> (8 * j)) & 0xffu;  // little-endian: byte j holds codes 2j, 2j+1
            c[2 * j] = byte >> 4;
            c[2 * j + 1] = byte & 0xfu;
        }
    } else if (BITS == 2) {
        const uint32_t w = __ldg(reinterpret_cast<const unsigned short *>(codes + i0 / 4));
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const uint32_t byte = (w >> (8 * j)) & 0xffu;
#pragma unroll
            for (int k = 0; k < 4; k++) c[4 * j + k] = (byte >> (6 - 2 * k)) & 0x3u;
        }
    } else if (BITS == 8) {
        const uint2 w = __ldg(reinterpret_cast<const uint2 *>(codes + i0));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            c[j] = (w.x >> (8 * j)) & 0xffu;
            c[4 + j] = (w.y >> (8 * j)) & 0xffu;
        }
    } else {  // 3 bits: one big-endian 24-bit word
        const uint8_t *g = codes + LQ_3BIT_GROUP_BYTES * (i0 / LQ_3BIT_GROUP_CODES);
        const uint32_t w = ((uint32_t)__ldg(g) << 16) | ((uint32_t)__ldg(g + 1) << 8) | __ldg(g + 2);
#pragma unroll
        for (int j = 0; j < 8; j++) c[j] = (w >> (21 - 3 * j)) & 0x7u;
    }
}

__device__ __forceinline__ void load_codebook(const QView &q, float *cb) {
    for (int k = threadIdx.x; k < (1 << q.bits); k += blockDim.x) cb[k] = q.codebook[k];
    __syncthreads();
}

/// Eight values per thread, written as two float4 (needs block_size % 8 == 0 and a 16-byte aligned out).
template <int BITS>
__global__ void dequantize8(QView q, float *__restrict__ out) {
    __shared__ float cb[1 << BITS];
    load_codebook(q, cb);
    const int64_t chunks = (q.numel + 7) / 8;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i0 = c * 8;
        uint32_t code[8];
        load8<BITS>(q.codes, i0, code);
        const float s = block_scale(q, divide(i0, q.block_size, q.block_shift));
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = LQ_MUL(cb[code[j]], s);
        if (i0 + 8 <= q.numel) {
            float4 *o = reinterpret_cast<float4 *>(out + i0);
            o[0] = make_float4(v[0], v[1], v[2], v[3]);
            o[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
            for (int j = 0; i0 + j < q.numel; j++) out[i0 + j] = v[j];
        }
    }
}

/// Any layout: one value per thread.
__global__ void dequantize_any(QView q, float *__restrict__ out) {
    __shared__ float cb[256];
    load_codebook(q, cb);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < q.numel; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = LQ_MUL(cb[lq_code_at(q.codes, q.bits, i)], block_scale(q, divide(i, q.block_size, q.block_shift)));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

constexpr int kGemvWarps = 4;  // rows per thread block

/// acc[n] += s · Σ_j w[j]·x[n, c0 + j] for the N rows of x (a row every `cols` floats; x + c0
/// 16-byte aligned): one lane's step of the fused GEMVs.
template <int N>
__device__ __forceinline__ void accumulate8(const float w[8], float s, const float *__restrict__ x, int64_t cols, int64_t c0, float acc[N]) {
#pragma unroll
    for (int n = 0; n < N; n++) {
        const float4 *xv = reinterpret_cast<const float4 *>(x + n * cols + c0);
        const float4 a = __ldg(xv), b = __ldg(xv + 1);
        const float dot = w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
        acc[n] += dot * s;
    }
}

/// y[n, r] = the warp's sum of acc[n] for n < count (a row of y every `rows` floats), written by lane 0.
__device__ __forceinline__ void store_row_sums(const float *acc, int count, int lane, float *__restrict__ y, int64_t rows, int64_t r) {
    for (int n = 0; n < count; n++) {
        const float total = warp_sum(acc[n]);
        if (lane == 0) y[n * rows + r] = total;
    }
}

/// Y[n, rows] = X[n, cols] · Wᵀ: one warp per row of W; each lane decodes 8 codes at a time in
/// registers and applies them to the N rows of x. Needs cols % 8 == 0, block_size % 8 == 0 and a
/// 16-byte aligned x.
template <int BITS, int N>
__global__ void gemv8(QView q, int64_t rows, int64_t cols, const float *__restrict__ x, float *__restrict__ y) {
    __shared__ float cb[1 << BITS];
    load_codebook(q, cb);
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    if (r >= rows) return;
    float acc[N];
#pragma unroll
    for (int n = 0; n < N; n++) acc[n] = 0.0f;
    const int64_t chunks = cols / 8;
    for (int64_t c = lane; c < chunks; c += 32) {
        const int64_t i0 = r * cols + c * 8;
        uint32_t code[8];
        load8<BITS>(q.codes, i0, code);
        const float s = block_scale(q, divide(i0, q.block_size, q.block_shift));
        float w[8];
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = cb[code[j]];
        accumulate8<N>(w, s, x, cols, c * 8, acc);
    }
    store_row_sums(acc, N, lane, y, rows, r);
}

/// Any layout: one warp per row, one value per lane step.
__global__ void gemv_any(QView q, int64_t rows, int64_t cols, int n_rows, const float *__restrict__ x, float *__restrict__ y) {
    __shared__ float cb[256];
    load_codebook(q, cb);
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    if (r >= rows) return;
    float acc[LQ_CUDA_GEMV_MAX_ROWS] = {0};
    for (int64_t c = lane; c < cols; c += 32) {
        const int64_t i = r * cols + c;
        const float w = cb[lq_code_at(q.codes, q.bits, i)] * block_scale(q, divide(i, q.block_size, q.block_shift));
        for (int n = 0; n < n_rows; n++) acc[n] += w * x[n * cols + c];
    }
    store_row_sums(acc, n_rows, lane, y, rows, r);
}

// ---- Uniform integers (lq_uniform.h): one byte per code, fp32 scales and zero points [groups, rows] ----

/// What a kernel needs of a uniform matrix, passed by value. group ≤ cols (the upload clamps it).
struct UView {
    const uint8_t *codes;  // [rows, cols], padded by 16 bytes
    const float *scales, *zeros;
    const int32_t *g_idx;  // [cols], or null for sequential groups
    int64_t rows, cols;
    int group, group_shift;  // log2(group), or -1
};

/// The group of column c: g_idx[c] (act-order), else c / group.
__device__ __forceinline__ int64_t uniform_group(const UView &u, int64_t c) {
    return u.g_idx ? (int64_t)__ldg(u.g_idx + c) : divide(c, u.group, u.group_shift);
}

/// The eight codes at p (8-byte aligned).
__device__ __forceinline__ void load8_bytes(const uint8_t *p, uint32_t c[8]) {
    const uint2 w = __ldg(reinterpret_cast<const uint2 *>(p));
#pragma unroll
    for (int j = 0; j < 4; j++) {
        c[j] = (w.x >> (8 * j)) & 0xffu;
        c[4 + j] = (w.y >> (8 * j)) & 0xffu;
    }
}

/// Eight values of one row and one group per thread, written as two float4. Needs cols % 8 == 0,
/// group % 8 == 0, no g_idx and a 16-byte aligned out.
__global__ void uniform_dequantize8(UView u, float *__restrict__ out) {
    const int64_t chunks = u.rows * u.cols / 8;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < chunks; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i0 = k * 8, r = i0 / u.cols, c0 = i0 - r * u.cols;
        const int64_t g = divide(c0, u.group, u.group_shift) * u.rows + r;
        const float s = __ldg(u.scales + g), z = __ldg(u.zeros + g);
        uint32_t code[8];
        load8_bytes(u.codes + i0, code);
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = lq_uniform_value(code[j], s, z);
        float4 *o = reinterpret_cast<float4 *>(out + i0);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
}

/// Any shape, g_idx or not: one value per thread.
__global__ void uniform_dequantize_any(UView u, float *__restrict__ out) {
    const int64_t count = u.rows * u.cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / u.cols, c = i - r * u.cols, g = uniform_group(u, c) * u.rows + r;
        out[i] = lq_uniform_value(__ldg(u.codes + i), __ldg(u.scales + g), __ldg(u.zeros + g));
    }
}

/// Y[n, rows] = X[n, cols] · Wᵀ: one warp per row of W, each lane taking 8 columns at a time and
/// applying them to the N rows of x. GIDX: each column's own group (g_idx); otherwise the 8 share
/// one, whose scale multiplies their sum. Needs cols % 8 == 0, a 16-byte aligned x, and without
/// GIDX group % 8 == 0.
template <bool GIDX, int N>
__global__ void uniform_gemv8(UView u, const float *__restrict__ x, float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    if (r >= u.rows) return;
    float acc[N];
#pragma unroll
    for (int n = 0; n < N; n++) acc[n] = 0.0f;
    const uint8_t *row = u.codes + r * u.cols;
    const int64_t chunks = u.cols / 8;
    for (int64_t k = lane; k < chunks; k += 32) {
        const int64_t c0 = k * 8;
        uint32_t code[8];
        load8_bytes(row + c0, code);
        float w[8], s = 1.0f;
        if (GIDX) {
            const int4 ga = __ldg(reinterpret_cast<const int4 *>(u.g_idx + c0)), gb = __ldg(reinterpret_cast<const int4 *>(u.g_idx + c0 + 4));
            const int g[8] = {ga.x, ga.y, ga.z, ga.w, gb.x, gb.y, gb.z, gb.w};
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int64_t at = (int64_t)g[j] * u.rows + r;
                w[j] = lq_uniform_value(code[j], __ldg(u.scales + at), __ldg(u.zeros + at));
            }
        } else {
            const int64_t at = divide(c0, u.group, u.group_shift) * u.rows + r;
            const float z = __ldg(u.zeros + at);
            s = __ldg(u.scales + at);
#pragma unroll
            for (int j = 0; j < 8; j++) w[j] = (float)code[j] - z;
        }
        accumulate8<N>(w, s, x, u.cols, c0, acc);
    }
    store_row_sums(acc, N, lane, y, u.rows, r);
}

/// Any shape, alignment or g_idx: one warp per row, one column per lane step.
__global__ void uniform_gemv_any(UView u, int n_rows, const float *__restrict__ x, float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    if (r >= u.rows) return;
    float acc[LQ_CUDA_GEMV_MAX_ROWS] = {0};
    const uint8_t *row = u.codes + r * u.cols;
    for (int64_t c = lane; c < u.cols; c += 32) {
        const int64_t g = uniform_group(u, c) * u.rows + r;
        const float w = lq_uniform_value(__ldg(row + c), __ldg(u.scales + g), __ldg(u.zeros + g));
        for (int n = 0; n < n_rows; n++) acc[n] += w * x[n * u.cols + c];
    }
    store_row_sums(acc, n_rows, lane, y, u.rows, r);
}

/// Calls launch(std::integral_constant<int, n>{}) for 1 ≤ n ≤ LQ_CUDA_GEMV_MAX_ROWS (the caller checked n):
/// the fused GEMVs keep their N rows' sums in registers.
template <typename Launch>
void for_rows(int64_t n, Launch launch) {
    static_assert(LQ_CUDA_GEMV_MAX_ROWS == 8, "the cases below");
    switch (n) {
        case 1: launch(std::integral_constant<int, 1>{}); break;
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 3: launch(std::integral_constant<int, 3>{}); break;
        case 4: launch(std::integral_constant<int, 4>{}); break;
        case 5: launch(std::integral_constant<int, 5>{}); break;
        case 6: launch(std::integral_constant<int, 6>{}); break;
        case 7: launch(std::integral_constant<int, 7>{}); break;
        default: launch(std::integral_constant<int, 8>{}); break;
    }
}

__global__ void f32_to_f16_kernel(const float *in, int64_t count, __half *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2half_rn(in[i]);
}

// ---- The decoder's other operations (references: lq_device_ops.h) ----

/// One block per row.
__global__ void rms_norm_kernel(const float *__restrict__ x, const float *__restrict__ weight, int64_t width, float eps,
                                float *__restrict__ out) {
    __shared__ float partial[32];
    const float *src = x + (int64_t)blockIdx.x * width;
    float *dst = out + (int64_t)blockIdx.x * width;
    float ss = 0;
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) ss += src[j] * src[j];
    ss = warp_sum(ss);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float v = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    const float r = 1.0f / sqrtf(partial[0] / (float)width + eps);
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) dst[j] = weight[j] * (src[j] * r);
}

__global__ void add_kernel(float *x, const float *y, int64_t count) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}

__global__ void add_bias_kernel(float *y, const float *bias, int64_t count, int64_t width) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % width];
}

__global__ void silu_mul_kernel(float *g, const float *u, int64_t count) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void gather_rows_kernel(const float *table, int64_t width, const int32_t *ids, int64_t n, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * width; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = table[(int64_t)ids[i / width] * width + i % width];
}

/// One thread per rotated pair; products and sums unfused, as the C reference rounds them.
__global__ void rope_kernel(float *x, const float *cos, const float *sin, int64_t rows, int64_t length, int64_t start,
                            int64_t heads, int64_t head_dim) {
    const int64_t half = head_dim / 2, pairs = rows * heads * half;
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = p % half, head = (p / half) % heads, row = p / (half * heads);
        const int64_t position = start + row % length;
        const float c = cos[position * half + i], s = sin[position * half + i];
        float *v = x + row * heads * head_dim + head * head_dim;
        const float x1 = v[i], x2 = v[i + half];
        v[i] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(-x2, s));
        v[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}

constexpr int kAttentionWarps = 4, kMaxHeadDim = LQ_CUDA_MAX_HEAD_DIM;

/// One block per (query row, head) and key range (blockIdx.y of gridDim.y, lq_attention_split_range).
/// Warp w takes the range's keys lo + w, lo + w + 4, ... in one pass with a running softmax (lane l
/// holds dimensions l, l + 32, ... of the query and of its partial output); the four partial
/// softmaxes are then merged. With one range the block writes the normalised output; with several
/// (PARTIAL) it writes its range's (max, Σ exp, Σ exp·v) for attention_merge_kernel.
template <bool PARTIAL>
__global__ void attention_kernel(const float *__restrict__ q, const float *__restrict__ keys,
                                 const float *__restrict__ values, lq_attention_shape s, float *__restrict__ out,
                                 float *__restrict__ part_acc, float2 *__restrict__ part_ml) {
    constexpr int kPerLane = kMaxHeadDim / 32;
    __shared__ float part_max[kAttentionWarps], part_sum[kAttentionWarps], part_out[kAttentionWarps][kMaxHeadDim];
    const int64_t job = blockIdx.x, splits = gridDim.y, c = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t head = job % s.heads, row = job / s.heads, b = row / s.length, t = row % s.length;
    const int64_t hd = s.head_dim, kv_width = s.kv_heads * hd, group = s.heads / s.kv_heads;
    const int64_t last = s.start + t, first = s.window > 0 && last - s.window + 1 > 0 ? last - s.window + 1 : 0;
    int64_t lo, hi;
    lq_attention_split_range(first, last, splits, c, &lo, &hi);
    const float *qh = q + row * s.heads * hd + head * hd;
    const float *k = keys + b * s.capacity * kv_width + (head / group) * hd;
    const float *v = values + b * s.capacity * kv_width + (head / group) * hd;
    float qr[kPerLane], acc[kPerLane];
#pragma unroll
    for (int r = 0; r < kPerLane; r++) {
        const int64_t d = lane + 32 * r;
        qr[r] = d < hd ? qh[d] : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = lo + warp; j < hi; j += kAttentionWarps) {
        float dot = 0.0f;
#pragma unroll
        for (int r = 0; r < kPerLane; r++) {
            const int64_t d = lane + 32 * r;
            if (d < hd) dot += qr[r] * k[j * kv_width + d];
        }
        const float score = s.scale * warp_sum(dot);
        const float m_new = fmaxf(m, score), correction = expf(m - m_new), p = expf(score - m_new);
        l = l * correction + p;
#pragma unroll
        for (int r = 0; r < kPerLane; r++) {
            const int64_t d = lane + 32 * r;
            if (d < hd) acc[r] = acc[r] * correction + p * v[j * kv_width + d];
        }
        m = m_new;
    }
    // A warp that saw no key keeps m = -inf and l = 0: its weight exp(m - M) below is 0.
    if (lane == 0) {
        part_max[warp] = m;
        part_sum[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < kPerLane; r++) {
        const int64_t d = lane + 32 * r;
        if (d < hd) part_out[warp][d] = acc[r];
    }
    __syncthreads();
    if (warp != 0) return;
    float M = part_max[0];
    for (int w = 1; w < kAttentionWarps; w++) M = fmaxf(M, part_max[w]);
    // Finite unless the range is empty (a range past a short row's keys); with one range key
    // `last` is always in it.
    const bool empty = M == -INFINITY;
    float weight[kAttentionWarps], L = 0.0f;
    for (int w = 0; w < kAttentionWarps; w++) {
        weight[w] = empty ? 0.0f : expf(part_max[w] - M);
        L += part_sum[w] * weight[w];
    }
    const int64_t slot = job * splits + c;
    for (int64_t d = lane; d < hd; d += 32) {
        float sum = 0.0f;
        for (int w = 0; w < kAttentionWarps; w++) sum += part_out[w][d] * weight[w];
        if (PARTIAL) part_acc[slot * hd + d] = sum;
        else out[row * s.heads * hd + head * hd + d] = sum / L;
    }
    if (PARTIAL && lane == 0) part_ml[slot] = make_float2(M, L);
}

/// One block per (query row, head): merges its ranges' partial softmaxes, as lq_ref_attention_split.
__global__ void attention_merge_kernel(const float *__restrict__ part_acc, const float2 *__restrict__ part_ml, int64_t splits,
                                       int64_t heads, int64_t hd, float *__restrict__ out) {
    const int64_t job = blockIdx.x, row = job / heads, head = job % heads;
    const float2 *ml = part_ml + job * splits;
    float M = -INFINITY;
    for (int64_t c = 0; c < splits; c++) M = fmaxf(M, ml[c].x);  // finite: some range holds key `last`
    float L = 0.0f;
    for (int64_t c = 0; c < splits; c++) L += ml[c].x == -INFINITY ? 0.0f : ml[c].y * expf(ml[c].x - M);
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float sum = 0.0f;
        for (int64_t c = 0; c < splits; c++)
            if (ml[c].x != -INFINITY) sum += part_acc[(job * splits + c) * hd + d] * expf(ml[c].x - M);
        out[row * heads * hd + head * hd + d] = sum / L;
    }
}

/// One block per row: the row's maximum, then Σ exp(x − max) in double, as lq_ref_token_nll.
__global__ void token_nll_kernel(const float *__restrict__ logits, int64_t vocab, const int32_t *__restrict__ targets,
                                 double *__restrict__ out) {
    __shared__ float part_max[32];
    __shared__ double part_sum[32];
    const float *row = logits + (int64_t)blockIdx.x * vocab;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, row[j]);
    for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (lane == 0) part_max[warp] = m;
    __syncthreads();
    m = part_max[0];
    for (int w = 1; w < warps; w++) m = fmaxf(m, part_max[w]);
    double sum = 0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += (double)expf(row[j] - m);
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) part_sum[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        for (int w = 0; w < warps; w++) total += part_sum[w];
        out[blockIdx.x] = (double)m + log(total) - (double)row[targets[blockIdx.x]];
    }
}

int grid_for(int64_t work, int threads) {
    const int64_t blocks = (work + threads - 1) / threads;
    return (int)(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

}  // namespace

struct lq_cuda_matrix {
    bool uniform;  // which view below describes it
    QView view;
    UView uniform_view;
    int64_t rows, cols;
    void *buffers[6];  // NormalFloat: codes, codebook, absmax, scale codes, scale map, group absmax;
                       // uniform: codes, scales, zeros, g_idx
};

namespace {
/// Copies the host buffers src[k] of size[k] bytes (none when 0) into m->buffers; the ones in
/// `padded` get 16 zero bytes after them, for the kernels' 8-code loads.
int upload_buffers(lq_cuda_matrix *m, const void *const *src, const size_t *size, int count, unsigned padded, const char *what) {
    for (int k = 0; k < count; k++) {
        if (size[k] == 0) continue;
        const size_t bytes = (padded >> k) & 1u ? size[k] + 16 : size[k];
        cudaError_t e = cudaMalloc(&m->buffers[k], bytes);
        if (e == cudaSuccess && bytes > size[k]) e = cudaMemset((uint8_t *)m->buffers[k] + size[k], 0, bytes - size[k]);
        if (e == cudaSuccess) e = cudaMemcpy(m->buffers[k], src[k], size[k], cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return fail((int)e, what, cudaGetErrorString(e));
    }
    return 0;
}
}  // namespace

// ---- Entry points ----

extern "C" int lq_cuda_abi_version(void) { return LQ_CUDA_ABI_VERSION; }

extern "C" const char *lq_cuda_last_error(void) { return last_error; }

extern "C" int lq_cuda_init(int device, lq_cuda_device_info *info) {
    int count = 0;
    CUDA_TRY(cudaGetDeviceCount(&count));
    if (count == 0) return fail(-1, "cudaGetDeviceCount", "no CUDA device");
    if (device < 0 || device >= count) {
        char detail[64];
        snprintf(detail, sizeof detail, "device %d requested, %d present", device, count);
        return fail(-1, "lq_cuda_init", detail);
    }
    CUDA_TRY(cudaSetDevice(device));
    chosen_device = thread_device = device;
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    if (info) {
        snprintf(info->name, sizeof info->name, "%s", prop.name);
        info->compute_major = prop.major;
        info->compute_minor = prop.minor;
        info->multiprocessors = prop.multiProcessorCount;
        info->l2_bytes = (size_t)prop.l2CacheSize;
        CUDA_TRY(cudaMemGetInfo(&info->free_memory, &info->total_memory));
        CUDA_TRY(cudaDriverGetVersion(&info->driver_version));
        CUDA_TRY(cudaRuntimeGetVersion(&info->runtime_version));
    }
    if (!blas) BLAS_TRY(cublasCreate(&blas));
    return 0;
}

extern "C" int lq_cuda_malloc(void **ptr, size_t bytes) {
    ENTER();
    CUDA_TRY(cudaMalloc(ptr, bytes ? bytes : 1));
    return 0;
}
extern "C" int lq_cuda_free(void *ptr) {
    ENTER();
    CUDA_TRY(cudaFree(ptr));
    return 0;
}
extern "C" int lq_cuda_upload(void *dst, const void *src, size_t bytes) {
    ENTER();
    CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return 0;
}
extern "C" int lq_cuda_download(void *dst, const void *src, size_t bytes) {
    ENTER();
    CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return 0;
}
extern "C" int lq_cuda_copy(void *dst, const void *src, size_t bytes) {
    ENTER();
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    return 0;
}
extern "C" int lq_cuda_synchronize(void) {
    ENTER();
    CUDA_TRY(cudaDeviceSynchronize());
    return 0;
}

extern "C" void lq_cuda_matrix_free(lq_cuda_matrix *m) {
    if (!m) return;
    if (enter() == 0)
        for (void *b : m->buffers) ignore(cudaFree(b));  // nothing to report to: the handle is gone either way
    delete m;
}

extern "C" int lq_cuda_matrix_upload(const lq_qtensor *t, int64_t rows, int64_t cols, lq_cuda_matrix **out) {
    ENTER();
    const lq_qformat f = t->format;
    if (const char *problem = lq_cuda_matrix_problem(t, rows, cols)) return fail(-1, "lq_cuda_matrix_upload", problem);
    const int64_t blocks = (t->numel + f.block_size - 1) / f.block_size;
    const int64_t groups = f.scale_kind == LQ_SCALES_F32 ? 0 : (blocks + f.scale_block_size - 1) / f.scale_block_size;
    // Host sources and sizes; code buffers get 16 bytes of zero padding for the 8-code loads.
    const void *src[6] = {t->codes, t->codebook, t->absmax, t->scale_codes, t->scale_map, t->group_absmax};
    size_t size[6] = {lq_packed_size(f.bits, t->numel), sizeof(float) * (1u << f.bits), 0, 0, 0, sizeof(float) * (size_t)groups};
    if (f.scale_kind == LQ_SCALES_F32) size[2] = sizeof(float) * (size_t)blocks;
    if (f.scale_kind == LQ_SCALES_DYNAMIC8) {
        size[3] = (size_t)blocks;
        size[4] = sizeof(float) * LQ_DYNAMIC8_MAP_SIZE;
    }
    if (f.scale_kind == LQ_SCALES_UINT) size[3] = lq_packed_size(f.scale_bits, blocks);
    lq_cuda_matrix *m = new lq_cuda_matrix();
    m->rows = rows;
    m->cols = cols;
    if (int status = upload_buffers(m, src, size, 6, 1u | 8u, "lq_cuda_matrix_upload")) {
        lq_cuda_matrix_free(m);  // what was allocated; fail() recorded the reason
        return status;
    }
    QView &v = m->view;
    v.bits = f.bits;
    v.block_size = f.block_size;
    v.scale_kind = f.scale_kind;
    v.scale_bits = f.scale_bits;
    v.scale_block_size = f.scale_block_size;
    v.block_shift = log2_exact(f.block_size);
    v.group_shift = f.scale_kind == LQ_SCALES_F32 ? 0 : log2_exact(f.scale_block_size);
    v.numel = t->numel;
    v.codes = (const uint8_t *)m->buffers[0];
    v.codebook = (const float *)m->buffers[1];
    v.absmax = (const float *)m->buffers[2];
    v.scale_codes = (const uint8_t *)m->buffers[3];
    v.scale_map = (const float *)m->buffers[4];
    v.group_absmax = (const float *)m->buffers[5];
    v.scale_offset = t->scale_offset;
    *out = m;
    return 0;
}

extern "C" int lq_cuda_uniform_upload(const lq_uniform *u, lq_cuda_matrix **out) {
    ENTER();
    if (const char *problem = lq_cuda_uniform_problem(u)) return fail(-1, "lq_cuda_uniform_upload", problem);
    // A group wider than the row is one group per row; clamped, it fits the kernels' int.
    const int64_t group = u->group < u->cols ? u->group : u->cols, groups = (u->cols + group - 1) / group;
    const void *src[4] = {u->codes, u->scales, u->zeros, u->g_idx};
    const size_t size[4] = {(size_t)(u->rows * u->cols), sizeof(float) * (size_t)(groups * u->rows),
                            sizeof(float) * (size_t)(groups * u->rows), u->g_idx ? sizeof(int32_t) * (size_t)u->cols : 0};
    lq_cuda_matrix *m = new lq_cuda_matrix();
    m->uniform = true;
    m->rows = u->rows;
    m->cols = u->cols;
    if (int status = upload_buffers(m, src, size, 4, 1u, "lq_cuda_uniform_upload")) {
        lq_cuda_matrix_free(m);
        return status;
    }
    UView &v = m->uniform_view;
    v.codes = (const uint8_t *)m->buffers[0];
    v.scales = (const float *)m->buffers[1];
    v.zeros = (const float *)m->buffers[2];
    v.g_idx = (const int32_t *)m->buffers[3];
    v.rows = u->rows;
    v.cols = u->cols;
    v.group = (int)group;
    v.group_shift = log2_exact((int)group);
    *out = m;
    return 0;
}

static void uniform_dequantize(const UView &u, float *out) {
    constexpr int threads = 256;
    if (u.cols % 8 == 0 && u.group % 8 == 0 && !u.g_idx && ((uintptr_t)out & 15) == 0)
        uniform_dequantize8<<<grid_for(u.rows * u.cols / 8, threads), threads>>>(u, out);
    else
        uniform_dequantize_any<<<grid_for(u.rows * u.cols, threads), threads>>>(u, out);
}

static void uniform_gemv(const UView &u, const float *x, int64_t n, float *y) {
    const int grid = (int)((u.rows + kGemvWarps - 1) / kGemvWarps), threads = 32 * kGemvWarps;
    if (u.cols % 8 != 0 || ((uintptr_t)x & 15) != 0 || (!u.g_idx && u.group % 8 != 0)) {
        uniform_gemv_any<<<grid, threads>>>(u, (int)n, x, y);
    } else if (u.g_idx) {
        for_rows(n, [&](auto rows) { uniform_gemv8<true, decltype(rows)::value><<<grid, threads>>>(u, x, y); });
    } else {
        for_rows(n, [&](auto rows) { uniform_gemv8<false, decltype(rows)::value><<<grid, threads>>>(u, x, y); });
    }
}

extern "C" int lq_cuda_dequantize(const lq_cuda_matrix *m, float *out) {
    ENTER();
    if (m->uniform) {
        uniform_dequantize(m->uniform_view, out);
        CUDA_TRY(cudaGetLastError());
        return 0;
    }
    const QView &q = m->view;
    constexpr int threads = 256;
    if (q.block_size % 8 == 0 && ((uintptr_t)out & 15) == 0) {
        const int grid = grid_for((q.numel + 7) / 8, threads);
        switch (q.bits) {
            case 2: dequantize8<2><<<grid, threads>>>(q, out); break;
            case 3: dequantize8<3><<<grid, threads>>>(q, out); break;
            case 4: dequantize8<4><<<grid, threads>>>(q, out); break;
            default: dequantize8<8><<<grid, threads>>>(q, out); break;
        }
    } else {
        dequantize_any<<<grid_for(q.numel, threads), threads>>>(q, out);
    }
    CUDA_TRY(cudaGetLastError());
    return 0;
}

template <int BITS>
static void launch_gemv8(const QView &q, int64_t rows, int64_t cols, const float *x, int64_t n, float *y) {
    const int grid = (int)((rows + kGemvWarps - 1) / kGemvWarps), threads = 32 * kGemvWarps;
    for_rows(n, [&](auto n_rows) { gemv8<BITS, decltype(n_rows)::value><<<grid, threads>>>(q, rows, cols, x, y); });
}

extern "C" int lq_cuda_gemv(const lq_cuda_matrix *m, const float *x, int64_t n, float *y) {
    ENTER();
    if (const char *problem = lq_cuda_gemv_problem(n)) return fail(-1, "lq_cuda_gemv", problem);
    if (m->uniform) {
        uniform_gemv(m->uniform_view, x, n, y);
        CUDA_TRY(cudaGetLastError());
        return 0;
    }
    const QView &q = m->view;
    if (m->cols % 8 == 0 && q.block_size % 8 == 0 && ((uintptr_t)x & 15) == 0) {
        switch (q.bits) {
            case 2: launch_gemv8<2>(q, m->rows, m->cols, x, n, y); break;
            case 3: launch_gemv8<3>(q, m->rows, m->cols, x, n, y); break;
            case 4: launch_gemv8<4>(q, m->rows, m->cols, x, n, y); break;
            default: launch_gemv8<8>(q, m->rows, m->cols, x, n, y); break;
        }
    } else {
        gemv_any<<<(int)((m->rows + kGemvWarps - 1) / kGemvWarps), 32 * kGemvWarps>>>(q, m->rows, m->cols, (int)n, x, y);
    }
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_gemm(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *workspace,
                            float *y) {
    ENTER();
    int status = lq_cuda_dequantize(m, workspace);
    if (status) return status;
    const float one = 1.0f;
    const int rows = (int)m->rows, cols = (int)m->cols, nn = (int)n;
    // Row-major W [rows, cols] is column-major Wᶜ [cols, rows]. Y [n, rows] row-major is Yᵀ column-major:
    // Yᵀ = W · Xᵀ = (Wᶜ)ᵀ · Xᵀ. Transposed: dXᵀ [cols, n] = Wᶜ · dYᵀ.
    if (!transposed) {
        BLAS_TRY(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, nn, cols, &one, workspace, cols, x, cols, &beta, y, rows));
    } else {
        BLAS_TRY(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, cols, nn, rows, &one, workspace, cols, x, rows, &beta, y, cols));
    }
    return 0;
}

namespace {
std::mutex staging_lock;
float *staging_x = nullptr, *staging_y = nullptr, *staging_w = nullptr;
size_t capacity_x = 0, capacity_y = 0, capacity_w = 0;

int reserve(float **buffer, size_t *capacity, size_t floats) {
    if (floats <= *capacity) return 0;
    if (*buffer) ignore(cudaFree(*buffer));
    *buffer = nullptr;
    *capacity = 0;
    CUDA_TRY(cudaMalloc(buffer, floats * sizeof(float)));
    *capacity = floats;
    return 0;
}
}  // namespace

extern "C" int lq_cuda_matmul_host(const lq_cuda_matrix *m, const float *x, int64_t n, int transposed, float beta, float *y) {
    ENTER();
    std::lock_guard<std::mutex> guard(staging_lock);
    const size_t in = (size_t)n * (transposed ? m->rows : m->cols), out = (size_t)n * (transposed ? m->cols : m->rows);
    int status = reserve(&staging_x, &capacity_x, in);
    if (!status) status = reserve(&staging_y, &capacity_y, out);
    if (status) return status;
    CUDA_TRY(cudaMemcpy(staging_x, x, in * sizeof(float), cudaMemcpyHostToDevice));
    if (beta != 0.0f) CUDA_TRY(cudaMemcpy(staging_y, y, out * sizeof(float), cudaMemcpyHostToDevice));
    if (!transposed && beta == 0.0f && n <= LQ_CUDA_GEMV_MAX_ROWS) {
        status = lq_cuda_gemv(m, staging_x, n, staging_y);
    } else {
        status = reserve(&staging_w, &capacity_w, (size_t)m->rows * m->cols);
        if (!status) status = lq_cuda_gemm(m, staging_x, n, transposed, beta, staging_w, staging_y);
    }
    if (status) return status;
    CUDA_TRY(cudaMemcpy(y, staging_y, out * sizeof(float), cudaMemcpyDeviceToHost));
    return 0;
}

extern "C" int lq_cuda_dense_matmul(const float *w, int64_t rows, int64_t cols, const float *x, int64_t n, float alpha,
                                    float beta, float *y) {
    ENTER();
    // Yᵀ [rows, n] column-major = (Wᶜ)ᵀ · Xᵀ, as in lq_cuda_gemm.
    BLAS_TRY(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)cols, &alpha, w, (int)cols, x, (int)cols,
                         &beta, y, (int)rows));
    return 0;
}

extern "C" int lq_cuda_rms_norm(const float *x, const float *weight, int64_t n, int64_t width, float eps, float *out) {
    ENTER();
    if (n == 0) return 0;
    rms_norm_kernel<<<(unsigned)n, 256>>>(x, weight, width, eps, out);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_add(float *x, const float *y, int64_t count) {
    ENTER();
    add_kernel<<<grid_for(count, 256), 256>>>(x, y, count);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_add_bias(float *y, const float *bias, int64_t n, int64_t width) {
    ENTER();
    add_bias_kernel<<<grid_for(n * width, 256), 256>>>(y, bias, n * width, width);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_silu_mul(float *g, const float *u, int64_t count) {
    ENTER();
    silu_mul_kernel<<<grid_for(count, 256), 256>>>(g, u, count);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

namespace {
std::mutex ids_lock;
int32_t *device_ids = nullptr;
size_t ids_capacity = 0;
}  // namespace

extern "C" int lq_cuda_gather_rows(const float *table, int64_t width, const int32_t *ids, int64_t n, float *out) {
    ENTER();
    std::lock_guard<std::mutex> guard(ids_lock);
    if ((size_t)n > ids_capacity) {
        if (device_ids) ignore(cudaFree(device_ids));
        device_ids = nullptr;
        ids_capacity = 0;
        CUDA_TRY(cudaMalloc(&device_ids, (size_t)n * sizeof(int32_t)));
        ids_capacity = (size_t)n;
    }
    CUDA_TRY(cudaMemcpy(device_ids, ids, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice));
    gather_rows_kernel<<<grid_for(n * width, 256), 256>>>(table, width, device_ids, n, out);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_rope(float *x, const float *cos, const float *sin, int64_t batch, int64_t length, int64_t start,
                            int64_t heads, int64_t head_dim) {
    ENTER();
    const int64_t rows = batch * length;
    rope_kernel<<<grid_for(rows * heads * (head_dim / 2), 256), 256>>>(x, cos, sin, rows, length, start, heads, head_dim);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

namespace {
std::mutex attention_lock;
float *attention_parts = nullptr;
size_t attention_capacity = 0;
}  // namespace

extern "C" int lq_cuda_attention_split(const float *q, const float *keys, const float *values, const lq_attention_shape *shape,
                                       int64_t splits, float *out) {
    ENTER();
    if (const char *problem = lq_cuda_attention_problem(shape)) return fail(-1, "lq_cuda_attention", problem);
    if (const char *problem = lq_cuda_splits_problem(splits)) return fail(-1, "lq_cuda_attention", problem);
    const int64_t jobs = shape->batch * shape->length * shape->heads, hd = shape->head_dim;
    if (jobs == 0) return 0;
    constexpr int threads = 32 * kAttentionWarps;
    if (splits == 1) {
        attention_kernel<false><<<(unsigned)jobs, threads>>>(q, keys, values, *shape, out, nullptr, nullptr);
        CUDA_TRY(cudaGetLastError());
        return 0;
    }
    // The partials: (max, Σ exp) [jobs·splits] as float2 first (cudaMalloc's alignment), then
    // Σ exp·v [jobs·splits, head_dim]. Held under the lock until both kernels are queued.
    std::lock_guard<std::mutex> guard(attention_lock);
    const size_t slots = (size_t)(jobs * splits);
    if (int status = reserve(&attention_parts, &attention_capacity, 2 * slots + slots * (size_t)hd)) return status;
    float2 *ml = reinterpret_cast<float2 *>(attention_parts);
    float *acc = attention_parts + 2 * slots;
    attention_kernel<true><<<dim3((unsigned)jobs, (unsigned)splits), threads>>>(q, keys, values, *shape, out, acc, ml);
    CUDA_TRY(cudaGetLastError());
    attention_merge_kernel<<<(unsigned)jobs, threads>>>(acc, ml, splits, shape->heads, hd, out);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_attention(const float *q, const float *keys, const float *values, const lq_attention_shape *shape,
                                 float *out) {
    return lq_cuda_attention_split(q, keys, values, shape, lq_attention_splits(shape), out);
}

namespace {
std::mutex nll_lock;
int32_t *nll_targets = nullptr;
double *nll_out = nullptr;
size_t nll_capacity = 0;
}  // namespace

extern "C" int lq_cuda_token_nll(const float *logits, int64_t n, int64_t vocab, const int32_t *targets, double *out) {
    ENTER();
    if (n == 0) return 0;
    std::lock_guard<std::mutex> guard(nll_lock);
    if ((size_t)n > nll_capacity) {
        ignore(cudaFree(nll_targets));
        ignore(cudaFree(nll_out));
        nll_targets = nullptr;
        nll_out = nullptr;
        nll_capacity = 0;
        CUDA_TRY(cudaMalloc(&nll_targets, (size_t)n * sizeof(int32_t)));
        CUDA_TRY(cudaMalloc(&nll_out, (size_t)n * sizeof(double)));
        nll_capacity = (size_t)n;
    }
    CUDA_TRY(cudaMemcpy(nll_targets, targets, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice));
    token_nll_kernel<<<(unsigned)n, 256>>>(logits, vocab, nll_targets, nll_out);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpy(out, nll_out, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost));
    return 0;
}

extern "C" int lq_cuda_sgemv_dense(const float *w, int64_t rows, int64_t cols, const float *x, float *y) {
    ENTER();
    const float one = 1.0f, zero = 0.0f;
    BLAS_TRY(cublasSgemv(blas, CUBLAS_OP_T, (int)cols, (int)rows, &one, w, (int)cols, x, 1, &zero, y, 1));
    return 0;
}

extern "C" int lq_cuda_hgemv_dense(const uint16_t *w, int64_t rows, int64_t cols, const uint16_t *x, uint16_t *y) {
    ENTER();
    const float one = 1.0f, zero = 0.0f;
    BLAS_TRY(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, 1, (int)cols, &one, w, CUDA_R_16F, (int)cols, x,
                          CUDA_R_16F, (int)cols, &zero, y, CUDA_R_16F, (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

extern "C" int lq_cuda_f32_to_f16(const float *in, int64_t count, uint16_t *out) {
    ENTER();
    f32_to_f16_kernel<<<grid_for(count, 256), 256>>>(in, count, reinterpret_cast<__half *>(out));
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int lq_cuda_time(int (*body)(void *), void *context, int iterations, float *milliseconds) {
    ENTER();
    int status = body(context);  // warm-up
    if (status) return status;
    cudaEvent_t start, stop;
    CUDA_TRY(cudaEventCreate(&start));
    CUDA_TRY(cudaEventCreate(&stop));
    CUDA_TRY(cudaEventRecord(start));
    for (int i = 0; i < iterations && !status; i++) status = body(context);
    CUDA_TRY(cudaEventRecord(stop));
    CUDA_TRY(cudaEventSynchronize(stop));
    CUDA_TRY(cudaEventElapsedTime(milliseconds, start, stop));
    ignore(cudaEventDestroy(start));
    ignore(cudaEventDestroy(stop));
    return status;
}
