#include "lq_cpu.h"

#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void lq_keep_freed_memory(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}

lq_cpu_features lq_cpu_detect(void) {
    lq_cpu_features f = {0, 0, 0, 0, 0};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    f.fma = __builtin_cpu_supports("fma") ? 1 : 0;
    f.f16c = __builtin_cpu_supports("f16c") ? 1 : 0;
    f.avx512f = __builtin_cpu_supports("avx512f") ? 1 : 0;
#elif defined(__aarch64__)
    f.neon = 1;
#endif
    return f;
}

lq_level lq_best_level(void) {
    lq_cpu_features f = lq_cpu_detect();
    if (f.avx2 && f.fma && f.f16c) return LQ_LEVEL_AVX2;
    if (f.neon) return LQ_LEVEL_NEON;
    return LQ_LEVEL_SCALAR;
}

lq_level lq_clamp_level(lq_level wanted) {
    lq_level best = lq_best_level();
    return wanted == best ? wanted : LQ_LEVEL_SCALAR;
}

// -1 until first use; written once, races only ever store the same value.
static volatile int active_level = -1;

lq_level lq_active_level(void) {
    int level = active_level;
    if (level >= 0) return (lq_level)level;
    lq_level chosen = lq_best_level();
    const char *env = getenv("LQLORA_SIMD");
    if (env && strcmp(env, "scalar") == 0) chosen = LQ_LEVEL_SCALAR;
    else if (env && strcmp(env, "avx2") == 0) chosen = lq_clamp_level(LQ_LEVEL_AVX2);
    else if (env && strcmp(env, "neon") == 0) chosen = lq_clamp_level(LQ_LEVEL_NEON);
    active_level = (int)chosen;
    return chosen;
}

lq_level lq_set_level(lq_level level) {
    active_level = (int)lq_clamp_level(level);
    return (lq_level)active_level;
}

const char *lq_level_name(lq_level level) {
    switch (level) {
        case LQ_LEVEL_AVX2: return "avx2";
        case LQ_LEVEL_NEON: return "neon";
        default: return "scalar";
    }
}
