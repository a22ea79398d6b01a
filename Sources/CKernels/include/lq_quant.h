// Blockwise NormalFloat formats: one definition of each layout, shared by every kernel
// (scalar reference, AVX2, NEON, and later CUDA).
//
// A matrix of `numel` values is flattened row-major and cut into blocks of `block_size` values
// (the last block may be short). Each value is a `bits`-wide index into a NormalFloat codebook,
// scaled by its block's absmax. Absmax values are stored in one of three ways:
//   LQ_SCALES_F32      one fp32 absmax per block (no double quantization).
//   LQ_SCALES_DYNAMIC8 bitsandbytes double quantization: absmax − offset (offset = mean) as one
//                      byte per block indexing the 256-entry signed dynamic map, times one fp32
//                      absmax per group of scale_block_size (256) blocks.
//   LQ_SCALES_UINT     LQ-LoRA double quantization: absmax − offset (offset = min) as scale_bits
//                      unsigned integers q, one group absmax g per scale_block_size blocks;
//                      absmax = q / ((2^scale_bits − 1) / g) + offset, all in fp32.
//
// Code packing (first value in the highest bits, bitsandbytes' order):
//   8 bits: one code per byte.            4 bits: two per byte, first in the high nibble.
//   2 bits: four per byte, first in bits 7-6.
//   3 bits: eight codes per 3 bytes; the bytes form a big-endian 24-bit word w and code j of the
//           group is (w >> (21 − 3j)) & 7. A short last group is padded with zero codes.
#ifndef LQ_QUANT_H
#define LQ_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "lq_cpu.h"
#include "lq_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LQ_SCALES_F32 = 0,
    LQ_SCALES_DYNAMIC8 = 1,
    LQ_SCALES_UINT = 2,
} lq_scale_kind;

typedef struct {
    int32_t bits;              // 2, 3, 4 or 8
    int32_t block_size;        // values per absmax block (B0)
    int32_t scale_kind;        // lq_scale_kind
    int32_t scale_bits;        // UINT: 2, 3, 4 or 8; DYNAMIC8: 8; F32: 32
    int32_t scale_block_size;  // blocks per group absmax (B1); unused for F32
} lq_qformat;

/// Views of one quantized matrix's buffers (nothing is owned).
typedef struct {
    lq_qformat format;
    int64_t numel;
    const uint8_t *codes;         // packed weight codes
    const float *codebook;        // 2^bits values, ascending
    const float *absmax;          // F32: one per block
    const uint8_t *scale_codes;   // DYNAMIC8: one byte per block; UINT: packed scale_bits codes
    const float *scale_map;       // DYNAMIC8: the 256-entry map
    const float *group_absmax;    // DYNAMIC8 / UINT: one per group of blocks, widened to fp32
    float scale_offset;           // DYNAMIC8 / UINT
} lq_qtensor;

/// Bytes holding `count` codes of `bits` bits in the layout above.
size_t lq_packed_bytes(int bits, int64_t count);
uint32_t lq_get_code(const uint8_t *packed, int bits, int64_t index);
/// Sets one code; the caller zeroes the buffer first.
void lq_put_code(uint8_t *packed, int bits, int64_t index, uint32_t code);

int64_t lq_num_blocks(int64_t numel, int32_t block_size);

/// The fp32 absmax of blocks [first, first + count).
void lq_block_scales(const lq_qtensor *t, int64_t first, int64_t count, float *out);

/// Values [start, start + count) of the matrix as fp32.
void lq_dequantize_level(lq_level level, const lq_qtensor *t, int64_t start, int64_t count, float *out);
void lq_dequantize(const lq_qtensor *t, int64_t start, int64_t count, float *out);

/// y[r] = Σ_c W[r, c] · x[c] for rows [row_begin, row_end) of the rows × cols matrix W,
/// decoding W block by block without an fp32 copy. y is indexed by absolute row.
void lq_gemv_level(lq_level level, const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end,
                   const float *x, float *y);
void lq_gemv(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y);

// ---- Encoding (scalar; the reference for deterministic files) ----

/// Per-block absmax of w[0, numel).
void lq_blockwise_absmax(const float *w, int64_t numel, int32_t block_size, float *absmax);

/// Index of the code nearest to `x` by the midpoint rule: the number of midpoints strictly below x
/// (torch.bucketize with right=False). `midpoints` has n − 1 entries, ascending.
uint32_t lq_nearest_code(float x, const float *midpoints, int n);

typedef enum {
    LQ_ENCODE_DIVIDE = 0,        // LQ-LoRA: x / s
    LQ_ENCODE_BITSANDBYTES = 1,  // x · (1/s), the short last block x / s, clamped to [-1, 1]
} lq_encode_mode;

/// Encodes w[start, start + count) of a numel-value matrix (start on a block boundary) against
/// per-block scales `scales[b]` (absolute block index). Codes go into `packed` (pre-zeroed).
void lq_encode_blocks(const float *w, int64_t numel, int64_t start, int64_t count, int32_t block_size,
                      const float *scales, lq_encode_mode mode, const float *midpoints, int n_codes, int bits,
                      uint8_t *packed);

/// The LQ-LoRA error table's inner loop, fused: Σ weight_i · (w_i − d_i)² in double over
/// w[start, start + count) (start on a block boundary, count a multiple of 8), where d_i is what
/// encoding w_i against its block's scale (LQ_ENCODE_DIVIDE) and decoding gives,
/// codebook[nearest(w_i / s_b)] · s_b, without writing codes or values; weight_i is fisher[i], or 1
/// when fisher is NULL. Eight partial sums (element i into lane i mod 8) are added at the end in one
/// fixed order, so every level returns the same bits.
double lq_block_error_level(lq_level level, const float *w, const float *fisher, int64_t start, int64_t count,
                            int32_t block_size, const float *scales, const float *midpoints, const float *codebook, int bits);

/// bitsandbytes' CPU 8-bit blockwise quantizer (its double-quantization step): a 65,536-entry
/// table maps (v + 1)/2 · 65535 + 0.5, truncated, to the code whose midpoints bracket the table
/// point. `lut` must hold 65,536 bytes; `code` is the sorted 256-entry map.
void lq_bnb_build_lut(const float *code, uint8_t *lut);

/// Codes for values[0, count) in blocks of `block_size` with per-block `absmax` (given): each
/// value times 1/absmax through the table; a block whose absmax is 0 gets code 0 (bitsandbytes).
void lq_bnb_encode8(const float *values, int64_t count, int32_t block_size, const float *absmax,
                    const uint8_t *lut, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
