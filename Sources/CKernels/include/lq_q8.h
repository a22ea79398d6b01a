// int8 activations against NormalFloat weights, as llama.cpp pairs its 4-bit types with Q8_0:
// x is quantized per block of 32 values to int8 with an fp32 scale, the codebook is held as int8,
// and each block's dot product is an integer sum that the block scales multiply in fp32.
//
// The arithmetic, which every level (scalar reference, AVX2, NEON) performs in the same order so
// that they agree bit for bit:
//   activations  block j of a row holds values 32j .. 32j + 31 (the last block of a row may be short);
//                d_j = amax_j / 127 (fp32), q = round-half-even(x / d_j) clamped to ±127, 0 when d_j = 0.
//                Blocks are stored in pairs (2p, 2p + 1): 64 bytes in the slot order lq_q8_element
//                gives, the order the weight decoders produce, so the kernels never reorder. Slots
//                0-31 (part A) and 32-63 (part B) each hold block 2p's values in their first 16 slots
//                and block 2p + 1's in the next 16: for NF4 part A the high nibbles (even elements)
//                and B the low nibbles (odd), for NF2/NF3/NF8 A the first four of each eight values and
//                B the last four. A missing last block of a pair is zeros.
//   codebook     c_k ≈ δ · C_k with C_k = round(c_k / δ), |C_k| ≤ 127 (lq_q8_codebook_make chooses δ).
//   lanes        a row keeps 8 fp32 accumulators; the eight values 8o .. 8o + 7 of block j (its octet o)
//                add isum = Σ C · q (exact, in int32) into acc[4 · (j mod 2) + o] as
//                acc = fma((float)isum, s_b · d_j, acc), s_b the weight block scale (if an octet falls
//                in two weight blocks, one fma per block, in block order).
//   result       y = (((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))) · δ.
//   residual     optionally (lq_q8_rows.q2), the blocks that hold an outlier carry a second int8 copy:
//                block j is flagged when d_j > τ · mean_k(d_k) over the row's blocks (so at most
//                nb / τ of them), and its residual r = x − d_j · q (fp32) is quantized as above to
//                (q2, d2_j); d2_j = 0 and q2 = 0 elsewhere. A second set of 8 lanes acc2 takes
//                fma((float)isum2, s_b · d2_j, acc2), isum2 = Σ C · q2, for the octets of the flagged
//                blocks in block order (AVX2 adds them for the pairs that hold a flagged block, where
//                the unflagged block of a pair adds fma(0, 0, acc2) = acc2),
//                and a row with a flagged block gives y = (total(acc) + total(acc2)) · δ, total the
//                order above. A row with none gives plain Q8_0's result bit for bit.
// The SIMD paths take rows of whole 32-value blocks (cols % 32 == 0) and weight blocks of 16 values
// or a multiple of 32 (the LQ-LoRA grid's 16/32/64, bitsandbytes' 64 and any multiple of 32), so no
// octet straddles weight blocks; anything else goes through the scalar reference.
#ifndef LQ_Q8_H
#define LQ_Q8_H

#include <stdint.h>

#include "lq_cpu.h"
#include "lq_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Values per activation block (Q8_0's QK8_0).
#define LQ_Q8_BLOCK 32
/// Rows of x one kernel pass decodes the weights for (more are taken in passes of this many).
#define LQ_Q8_PASS_ROWS 4

/// A NormalFloat codebook held as int8: c_k ≈ scale · values[k].
typedef struct {
    int8_t values[256];
    float scale;
} lq_q8_codebook;

/// The int8 codebook of `codebook` (2^bits ascending values): δ = m / s with m = max |c_k| and s the
/// value of {64, 64 + 1/256, ..., 127.49609375} (so every |C_k| ≤ 127) whose C_k = round(c_k · s / m)
/// give the least mean squared error Σ (c_k − δ·C_k)² / 2^bits over the codes (the NormalFloat
/// codes are equally likely by construction, so this is the weights' own mean squared error);
/// ties go to the larger s.
void lq_q8_codebook_make(const float *codebook, int bits, lq_q8_codebook *out);

/// Element (0..63) of a pair of blocks that slot `slot` (0..63) holds, for weights of `bits` bits.
int lq_q8_element(int bits, int slot);

/// Activation blocks per row of `cols` values.
int64_t lq_q8_blocks(int64_t cols);
/// Bytes of one quantized row: 64 per pair of blocks.
int64_t lq_q8_row_bytes(int64_t cols);

/// Quantizes one row x[0, cols) for weights of `bits` bits: q gets lq_q8_row_bytes(cols) bytes (the
/// slots past a short or missing last block are 0), d one scale per block. Bit-equal at every level
/// for finite x.
void lq_q8_quantize_level(lq_level level, int bits, const float *x, int64_t cols, int8_t *q, float *d);
void lq_q8_quantize(int bits, const float *x, int64_t cols, int8_t *q, float *d);

/// The outliers' residual of one row quantized by lq_q8_quantize(_level) to (q, d): the blocks with
/// d_j > tau · mean(d) (every nonzero block for tau ≤ 0, none for tau = +inf) get their residual
/// x − d_j · q quantized to (q2, d2_j) in the same layout; the others d2_j = 0 and zeros in q2. The same
/// scalar code at every level (a flagged block is rare and costs 32 values). Returns the number of
/// flagged blocks.
int64_t lq_q8_quantize_residual(int bits, const float *x, int64_t cols, float tau, const int8_t *q, const float *d,
                                int8_t *q2, float *d2);

/// Rows of quantized activations: row i's bytes at q + i · lq_q8_row_bytes(cols), its scales at
/// d + i · lq_q8_blocks(cols); with q2 and d2 (both or neither; NULL: none) the outlier residual of
/// each row, laid out the same way (lq_q8_quantize_residual).
typedef struct {
    const int8_t *q;
    const float *d;
    int64_t count;
    const int8_t *q2;
    const float *d2;
} lq_q8_rows;

/// y[i · ldy + r] = Σ_c Ŵ[r, c] · x̂_i[c] for rows [row_begin, row_end) of the rows × cols matrix W
/// and every row i of x, with the arithmetic above. Each (i, r) is computed alone, so the result does
/// not depend on how many rows of x come together or how the rows of W are split.
void lq_q8_gemv_level(lq_level level, const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols,
                      int64_t row_begin, int64_t row_end, const lq_q8_rows *x, float *y, int64_t ldy);
void lq_q8_gemv(const lq_qtensor *t, const lq_q8_codebook *codebook, int64_t cols, int64_t row_begin, int64_t row_end,
                const lq_q8_rows *x, float *y, int64_t ldy);

/// The integer dot product the SIMD level uses on this CPU: "vpdpbusd" (AVX-VNNI) or "vpmaddubsw"
/// on x86-64, "sdot" (ARMv8.2 dot product) or "smull" (baseline ARMv8) on arm64. LQLORA_Q8_DOT=baseline
/// makes it take the baseline instruction (vpmaddubsw, smull) where the CPU has the other, so the
/// tests run both on one machine.
const char *lq_q8_dot(void);

#ifdef __cplusplus
}
#endif
#endif
