// The level dispatch shared by the kernel families: LQ_PICK(level, name, args...) calls name_avx2 or
// name_neon when the level asks for it and the CPU has it, else name_scalar, and returns.
#ifndef LQ_DISPATCH_H
#define LQ_DISPATCH_H

#include "lq_cpu.h"

#if defined(__x86_64__)
#define LQ_PICK(level, name, ...)                                              \
    do {                                                                       \
        if ((level) == LQ_LEVEL_AVX2 && lq_best_level() == LQ_LEVEL_AVX2) {    \
            name##_avx2(__VA_ARGS__);                                          \
            return;                                                            \
        }                                                                      \
        name##_scalar(__VA_ARGS__);                                            \
    } while (0)
#elif defined(__aarch64__)
#define LQ_PICK(level, name, ...)                                              \
    do {                                                                       \
        if ((level) == LQ_LEVEL_NEON) {                                        \
            name##_neon(__VA_ARGS__);                                          \
            return;                                                            \
        }                                                                      \
        name##_scalar(__VA_ARGS__);                                            \
    } while (0)
#else
#define LQ_PICK(level, name, ...) name##_scalar(__VA_ARGS__)
#endif

#endif
