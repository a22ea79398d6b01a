// The arithmetic of the block layouts in lq_quant.h (and of lq_uniform.h's integers), written once for every compiler that builds a
// kernel: the C scalar reference includes it as static inline C, the CUDA kernels (nvcc) as
// __host__ __device__ functions. Dequantization must round identically everywhere, so products and
// sums here are never contracted into fused multiply-adds (CUDA's __fmul_rn/__fadd_rn; the C
// reference is built without FMA contraction).
#ifndef LQ_LAYOUT_H
#define LQ_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define LQ_HD static __host__ __device__ __forceinline__
#else
#define LQ_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define LQ_MUL(a, b) __fmul_rn((a), (b))
#define LQ_ADD(a, b) __fadd_rn((a), (b))
#define LQ_DIV(a, b) __fdiv_rn((a), (b))
#define LQ_SUB(a, b) __fsub_rn((a), (b))
#else
#define LQ_MUL(a, b) ((a) * (b))
#define LQ_ADD(a, b) ((a) + (b))
#define LQ_DIV(a, b) ((a) / (b))
#define LQ_SUB(a, b) ((a) - (b))
#endif

/// 3-bit codes: eight codes in three bytes.
#define LQ_3BIT_GROUP_CODES 8
#define LQ_3BIT_GROUP_BYTES 3
/// bitsandbytes' double quantization: entries of its signed dynamic map.
#define LQ_DYNAMIC8_MAP_SIZE 256

/// Bytes holding `count` codes of `bits` bits.
LQ_HD size_t lq_packed_size(int bits, int64_t count) {
    switch (bits) {
        case 8: return (size_t)count;
        case 4: return (size_t)((count + 1) / 2);
        case 2: return (size_t)((count + 3) / 4);
        case 3: return (size_t)(LQ_3BIT_GROUP_BYTES * ((count + 7) / 8));
        default: return 0;
    }
}

/// Code `i` of a packed buffer (first value in the highest bits).
LQ_HD uint32_t lq_code_at(const uint8_t *p, int bits, int64_t i) {
    switch (bits) {
        case 8: return p[i];
        case 4: return (p[i >> 1] >> (4 - 4 * (i & 1))) & 0xfu;
        case 2: return (p[i >> 2] >> (6 - 2 * (i & 3))) & 0x3u;
        case 3: {
            const uint8_t *g = p + LQ_3BIT_GROUP_BYTES * (i >> 3);
            uint32_t w = ((uint32_t)g[0] << 16) | ((uint32_t)g[1] << 8) | g[2];
            return (w >> (21 - 3 * (i & 7))) & 0x7u;
        }
        default: return 0;
    }
}

/// bitsandbytes double quantization: a block's absmax from its map value and its group's absmax.
LQ_HD float lq_dynamic8_scale(float map_value, float group_absmax, float offset) {
    return LQ_ADD(LQ_MUL(map_value, group_absmax), offset);
}

/// LQ-LoRA double quantization: the step of a group (pytorch-quantization's max_bound / amax).
LQ_HD float lq_uint_step(int scale_bits, float group_absmax) {
    return LQ_DIV((float)((1 << scale_bits) - 1), group_absmax);
}

/// LQ-LoRA double quantization: a block's absmax from its code; a group whose absmax is (nearly)
/// zero decodes every block to the offset.
LQ_HD float lq_uint_scale(uint32_t code, float step, float group_absmax, float offset) {
    return LQ_ADD(group_absmax > 0x1p-24f ? LQ_DIV((float)code, step) : 0.0f, offset);
}

/// A uniform-integer weight (GPTQ / round to nearest, lq_uniform.h): scale · (code − zero point).
LQ_HD float lq_uniform_value(uint32_t code, float scale, float zero) {
    return LQ_MUL(scale, LQ_SUB((float)code, zero));
}

#endif
