// CPU feature detection and the kernel level the dispatchers use.
#ifndef LQ_CPU_H
#define LQ_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

/// Kernel families. Every SIMD kernel has a scalar twin at LQ_LEVEL_SCALAR.
typedef enum {
    LQ_LEVEL_SCALAR = 0,
    LQ_LEVEL_AVX2 = 1,  // x86-64 with AVX2 + FMA + F16C
    LQ_LEVEL_NEON = 2,  // arm64 (NEON is architectural there)
} lq_level;

typedef struct {
    int avx2, fma, f16c, avx512f, neon;
} lq_cpu_features;

/// What this CPU supports.
lq_cpu_features lq_cpu_detect(void);

/// The best level this CPU runs, before any override.
lq_level lq_best_level(void);

/// The level the dispatching kernels use: the best level, lowered by the
/// LQLORA_SIMD environment variable ("scalar", "avx2", "neon") or lq_set_level.
lq_level lq_active_level(void);

/// Forces a level (clamped to what the CPU supports); returns the level now active. Process-wide:
/// for the command line and the C tests, never from a test that runs beside others.
lq_level lq_set_level(lq_level level);

/// `level`, lowered to what this CPU supports (what lq_set_level would make active).
lq_level lq_clamp_level(lq_level level);

/// Human-readable name of a level.
const char *lq_level_name(lq_level level);

/// Keeps freed blocks of up to 32 MiB in the C heap (glibc: mallopt mmap and trim thresholds), so
/// that activations allocated every step reuse memory instead of paying for fresh zeroed pages.
/// A no-op on other C libraries.
void lq_keep_freed_memory(void);

#ifdef __cplusplus
}
#endif
#endif
