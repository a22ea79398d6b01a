// Why the NF4 GEMV is compute-bound on AVX2: the decode + multiply loop alone, on codes and x that
// stay in L1, in TSC cycles per 64 weights, for the two exact decoders we tried:
//   planes:  our kernel's (quant_x86.c): four vpshufb byte-plane lookups per 32 codes, then two
//            unpack levels to re-interleave the bytes into floats (24 shuffles per 64 weights)
//   vpermps: two 8-entry vpermps tables per 8 codes, selected by a blend on the code's bit 3
// Usage: cc -O3 -mavx2 -mfma scripts/nf4-decode-microbench.c -o /tmp/nf4-decode -lm && /tmp/nf4-decode
// With -DLQ_KERNELS and the kernel sources it also times the kernels themselves on a cache-resident
// NF4 matrix (64 x 1024, blocks of 64, bitsandbytes' 8-bit double-quantized scales): the exact AVX2
// GEMV (lq_gemv_level) and the int8-activation GEMV (lq_q8_gemv_level, with and without quantizing x):
//   cc -O3 -mavx2 -mfma -ffp-contract=off -DLQ_KERNELS -ISources/CKernels/include -ISources/CKernels \
//     scripts/nf4-decode-microbench.c Sources/CKernels/cpu.c Sources/CKernels/quant_*.c Sources/CKernels/q8_*.c \
//     -o /tmp/nf4-decode -lm && /tmp/nf4-decode
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>
#if defined(LQ_KERNELS)
#include "CKernels.h"
#endif

static const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                              -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                              0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                              0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
#define N (1 << 14)  // weights per pass: 8 KB of codes, 64 KB of x
static uint8_t codes[N / 2];
static float x[N];

static float hsum(__m256 v) {
    float o[8];
    _mm256_storeu_ps(o, v);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

/// Dot product of the codes with x in the planes decoder's element order (the kernel permutes x once).
__attribute__((noipa)) static float planes(void) {
    uint8_t bytes[4][32];
    for (int c = 0; c < 16; c++) {
        uint32_t u;
        memcpy(&u, nf4 + c, 4);
        for (int p = 0; p < 4; p++) bytes[p][c] = bytes[p][c + 16] = (uint8_t)(u >> (8 * p));
    }
    __m256i plane[4];
    for (int p = 0; p < 4; p++) plane[p] = _mm256_loadu_si256((const __m256i *)bytes[p]);
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int g = 0; g < N / 64; g++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * g));
        const __m256i idx[2] = {_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), _mm256_and_si256(v, low4)};
        __m256 f[8];
        for (int h = 0; h < 2; h++) {
            const __m256i b0 = _mm256_shuffle_epi8(plane[0], idx[h]), b1 = _mm256_shuffle_epi8(plane[1], idx[h]);
            const __m256i b2 = _mm256_shuffle_epi8(plane[2], idx[h]), b3 = _mm256_shuffle_epi8(plane[3], idx[h]);
            const __m256i a = _mm256_unpacklo_epi8(b0, b1), b = _mm256_unpackhi_epi8(b0, b1);
            const __m256i c = _mm256_unpacklo_epi8(b2, b3), d = _mm256_unpackhi_epi8(b2, b3);
            f[4 * h] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(a, c));
            f[4 * h + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(a, c));
            f[4 * h + 2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(b, d));
            f[4 * h + 3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(b, d));
        }
        const float *xg = x + 64 * g;
        for (int r = 0; r < 8; r += 2) {
            acc0 = _mm256_fmadd_ps(f[r], _mm256_loadu_ps(xg + 8 * r), acc0);
            acc1 = _mm256_fmadd_ps(f[r + 1], _mm256_loadu_ps(xg + 8 * r + 8), acc1);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/// The same in natural element order: lane e of 8 takes byte e/2, the high nibble when e is even.
__attribute__((noipa)) static float permutes(void) {
    const __m256 lo = _mm256_loadu_ps(nf4), hi = _mm256_loadu_ps(nf4 + 8);
    const __m256i right = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24), left = _mm256_setr_epi32(24, 28, 16, 20, 8, 12, 0, 4);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int g = 0; g < N / 8; g += 2) {
        uint32_t w0, w1;
        memcpy(&w0, codes + 4 * g, 4);
        memcpy(&w1, codes + 4 * g + 4, 4);
        const __m256i b0 = _mm256_set1_epi32((int)w0), b1 = _mm256_set1_epi32((int)w1);
        const __m256i i0 = _mm256_srlv_epi32(b0, right), m0 = _mm256_sllv_epi32(b0, left);
        const __m256i i1 = _mm256_srlv_epi32(b1, right), m1 = _mm256_sllv_epi32(b1, left);
        const __m256 f0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, i0), _mm256_permutevar8x32_ps(hi, i0), _mm256_castsi256_ps(m0));
        const __m256 f1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, i1), _mm256_permutevar8x32_ps(hi, i1), _mm256_castsi256_ps(m1));
        acc0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(x + 8 * g), acc0);
        acc1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + 8 * g + 8), acc1);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}


static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/// Median over 7 runs of 2000 passes, TSC cycles per 64 weights.
static double cycles(float (*body)(void)) {
    double t[7];
    volatile float sink = 0;
    for (int r = 0; r < 7; r++) {
        const uint64_t start = __rdtsc();
        for (int i = 0; i < 2000; i++) sink += body();
        t[r] = (double)(__rdtsc() - start) / 2000 / (N / 64);
    }
    (void)sink;
    qsort(t, 7, sizeof t[0], compare);
    return t[3];
}

#if defined(LQ_KERNELS)
#ifndef KR
#define KR 64
#define KC 1024
#endif  // 64K weights: 32 KiB of codes, in L1/L2 across passes
static lq_qtensor kt;
static lq_q8_codebook kcb;
static float kx[KC], ky[KR], kd[KC / 32];
static int8_t kq[KC];
// x with four outlier channels at 10× (SmolLM2's 5, 230, 308 and 507, modulo KC) and its residual
// (lq_q8_quantize_residual at τ = 2, the int8 path's rule).
static float ox[KC], od[KC / 32], od2[KC / 32];
static int8_t oq[KC], oq2[KC];
static int64_t oflagged;

__attribute__((noipa)) static float kernel_exact(void) {
    lq_gemv_level(LQ_LEVEL_AVX2, &kt, KC, 0, KR, kx, ky);
    return ky[0];
}
__attribute__((noipa)) static float kernel_int8(void) {
    const lq_q8_rows rows = {kq, kd, 1};
    lq_q8_gemv_level(LQ_LEVEL_AVX2, &kt, &kcb, KC, 0, KR, &rows, ky, KR);
    return ky[0];
}
__attribute__((noipa)) static float kernel_int8_quantizing(void) {
    lq_q8_quantize_level(LQ_LEVEL_AVX2, 4, kx, KC, kq, kd);
    return kernel_int8();
}
__attribute__((noipa)) static float kernel_int8_residual(void) {
    const lq_q8_rows rows = {oq, od, 1, oq2, od2};
    lq_q8_gemv_level(LQ_LEVEL_AVX2, &kt, &kcb, KC, 0, KR, &rows, ky, KR);
    return ky[0];
}
__attribute__((noipa)) static float kernel_int8_residual_quantizing(void) {
    lq_q8_quantize_level(LQ_LEVEL_AVX2, 4, ox, KC, oq, od);
    oflagged = lq_q8_quantize_residual(4, ox, KC, 2.0f, oq, od, oq2, od2);
    return kernel_int8_residual();
}

/// TSC ticks per nanosecond of CLOCK_MONOTONIC (both advance while the process waits).
static double tsc_per_ns(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    const uint64_t t0 = __rdtsc();
    double ns;
    do {
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    } while (ns < 2e7);
    return (double)(__rdtsc() - t0) / ns;
}

/// Per 64 weights, in TSC cycles of this thread's CPU time (so time spent descheduled on a shared
/// machine does not count), median of 7 runs of 200 calls.
static double kernel_cycles(float (*body)(void)) {
    static double ticks = 0;
    if (ticks == 0) ticks = tsc_per_ns();
    double t[7];
    volatile float sink = 0;
    for (int r = 0; r < 7; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (int i = 0; i < 200; i++) sink += body();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        const double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        t[r] = ns * ticks / 200 / (KR * KC / 64);
    }
    (void)sink;
    qsort(t, 7, sizeof t[0], compare);
    return t[3];
}

static void kernels(void) {
    static uint8_t codes[KR * KC / 2], scale_codes[KR * KC / 64];
    static float map[256], group_absmax[KR * KC / 64 / 256 + 1];
    for (int i = 0; i < KR * KC / 2; i++) codes[i] = (uint8_t)rand();
    for (int i = 0; i < KR * KC / 64; i++) scale_codes[i] = (uint8_t)rand();
    for (int i = 0; i < 256; i++) map[i] = (float)i / 255.0f - 0.5f;
    for (int i = 0; i < KR * KC / 64 / 256 + 1; i++) group_absmax[i] = 0.05f;
    for (int i = 0; i < KC; i++) kx[i] = (float)rand() / RAND_MAX - 0.5f;
    kt = (lq_qtensor){{4, 64, LQ_SCALES_DYNAMIC8, 8, 256}, KR * KC, codes, nf4, NULL, scale_codes, map, group_absmax, 0.03f};
    lq_q8_codebook_make(nf4, 4, &kcb);
    lq_q8_quantize_level(LQ_LEVEL_AVX2, 4, kx, KC, kq, kd);
    memcpy(ox, kx, sizeof ox);
    const int outlier[4] = {5, 230, 308, 507};
    for (int k = 0; k < 4; k++) ox[outlier[k] % KC] *= 10.0f;
    kernel_int8_residual_quantizing();
    const double e = kernel_cycles(kernel_exact), i8 = kernel_cycles(kernel_int8), iq = kernel_cycles(kernel_int8_quantizing);
    const double r8 = kernel_cycles(kernel_int8_residual), rq = kernel_cycles(kernel_int8_residual_quantizing);
    printf("kernels, NF4 b64 dq8 %dx%d in cache, TSC cycles of thread CPU time per 64 weights (median of 7): exact GEMV %.2f, int8-activation GEMV %.2f"
           " (%.2f with quantizing x; exact / int8 = %.2fx); x with 4 outlier channels and their residual (%lld of %d blocks flagged) %.2f"
           " (%.2f with quantizing x and the residual)\n", KR, KC, e, i8, iq, e / i8, (long long)oflagged, KC / 32, r8, rq);
}
#endif

int main(void) {
    srand(1);
    for (int i = 0; i < N / 2; i++) codes[i] = (uint8_t)rand();
    for (int i = 0; i < N; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    // Correctness of the natural-order decoder against a scalar dot product.
    double want = 0;
    for (int i = 0; i < N; i++) want += (double)nf4[i % 2 == 0 ? codes[i / 2] >> 4 : codes[i / 2] & 15] * x[i];
    if (!(fabs(permutes() - want) <= 1e-3)) { fprintf(stderr, "vpermps decoder is wrong\n"); return 1; }
    const double p = cycles(planes), v = cycles(permutes);
    printf("TSC cycles per 64 weights (median of 7): planes %.2f, vpermps %.2f (vpermps / planes = %.2fx)\n", p, v, v / p);
#if defined(LQ_KERNELS)
    kernels();
#endif
    return 0;
}
