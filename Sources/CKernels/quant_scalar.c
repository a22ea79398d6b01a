// Scalar reference for the NormalFloat formats: packing, scales, dequantization, GEMV, encoding.
#include <math.h>
#include <string.h>

#include "quant_impl.h"

size_t lq_packed_bytes(int bits, int64_t count) { return lq_packed_size(bits, count); }

uint32_t lq_get_code(const uint8_t *p, int bits, int64_t i) { return lq_code_at(p, bits, i); }

void lq_put_code(uint8_t *p, int bits, int64_t i, uint32_t c) {
    switch (bits) {
        case 8: p[i] = (uint8_t)c; break;
        case 4: p[i >> 1] |= (uint8_t)((c & 0xf) << (4 - 4 * (i & 1))); break;
        case 2: p[i >> 2] |= (uint8_t)((c & 0x3) << (6 - 2 * (i & 3))); break;
        case 3: {
            uint8_t *g = p + 3 * (i >> 3);
            uint32_t w = (c & 7u) << (21 - 3 * (i & 7));
            g[0] |= (uint8_t)(w >> 16);
            g[1] |= (uint8_t)(w >> 8);
            g[2] |= (uint8_t)w;
            break;
        }
        default: break;
    }
}

void lq_unpack_codes(const uint8_t *p, int bits, int64_t index, int64_t count, uint8_t *out) {
    for (int64_t k = 0; k < count; k++) out[k] = (uint8_t)lq_get_code(p, bits, index + k);
}

int64_t lq_num_blocks(int64_t numel, int32_t block_size) { return (numel + block_size - 1) / block_size; }

void lq_block_scales_with(const lq_qtensor *t, int64_t first, int64_t count, float *out, lq_uint_scales_kernel kernel) {
    const lq_qformat *f = &t->format;
    if (f->scale_kind == LQ_SCALES_F32) {
        memcpy(out, t->absmax + first, (size_t)count * sizeof(float));
        return;
    }
    // Walk group by group: one step per group, not per block (this runs once per row in GEMV).
    const int64_t group = f->scale_block_size, end = first + count;
    int64_t b = first;
    while (b < end) {
        const int64_t g = b / group;
        const int64_t group_end = (g + 1) * group < end ? (g + 1) * group : end;
        const float ga = t->group_absmax[g], offset = t->scale_offset;
        if (f->scale_kind == LQ_SCALES_DYNAMIC8) {
            for (; b < group_end; b++) out[b - first] = lq_dynamic8_scale(t->scale_map[t->scale_codes[b]], ga, offset);
        } else {
            const float step = lq_uint_step(f->scale_bits, ga);
            if (kernel && ga > 0x1p-24f) b += kernel(t, b, group_end - b, step, out + (b - first));
            for (; b < group_end; b++) out[b - first] = lq_uint_scale(lq_code_at(t->scale_codes, f->scale_bits, b), step, ga, offset);
        }
    }
}

void lq_block_scales(const lq_qtensor *t, int64_t first, int64_t count, float *out) {
    lq_block_scales_with(t, first, count, out, NULL);
}

void lq_dequantize_scalar(const lq_qtensor *t, int64_t start, int64_t count, float *out) {
    const int bs = t->format.block_size;
    int64_t i = start, end = start + count;
    while (i < end) {
        int64_t b = i / bs;
        int64_t block_end = (b + 1) * bs < end ? (b + 1) * bs : end;
        float s;
        lq_block_scales(t, b, 1, &s);
        for (; i < block_end; i++) out[i - start] = t->codebook[lq_get_code(t->codes, t->format.bits, i)] * s;
    }
}

void lq_gemv_scalar(const lq_qtensor *t, int64_t cols, int64_t row_begin, int64_t row_end, const float *x, float *y) {
    const int bs = t->format.block_size;
    for (int64_t r = row_begin; r < row_end; r++) {
        int64_t i = r * cols, end = i + cols;
        double acc = 0;  // the reference accumulates in double
        while (i < end) {
            int64_t b = i / bs;
            int64_t block_end = (b + 1) * bs < end ? (b + 1) * bs : end;
            float s;
            lq_block_scales(t, b, 1, &s);
            double partial = 0;
            for (; i < block_end; i++) {
                partial += (double)t->codebook[lq_get_code(t->codes, t->format.bits, i)] * x[i - r * cols];
            }
            acc += partial * s;
        }
        y[r] = (float)acc;
    }
}

void lq_blockwise_absmax(const float *w, int64_t numel, int32_t block_size, float *absmax) {
    int64_t nb = lq_num_blocks(numel, block_size);
    for (int64_t b = 0; b < nb; b++) {
        int64_t lo = b * block_size, hi = lo + block_size < numel ? lo + block_size : numel;
        float m = 0;
        for (int64_t i = lo; i < hi; i++) m = fmaxf(m, fabsf(w[i]));
        absmax[b] = m;
    }
}

uint32_t lq_nearest_code(float x, const float *midpoints, int n) {
    // Binary search for the number of midpoints strictly below x.
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (midpoints[mid] < x) lo = mid + 1; else hi = mid;
    }
    return (uint32_t)lo;
}

void lq_encode_blocks(const float *w, int64_t numel, int64_t start, int64_t count, int32_t block_size,
                      const float *scales, lq_encode_mode mode, const float *midpoints, int n_codes, int bits,
                      uint8_t *packed) {
    const int64_t short_block = numel % block_size ? numel / block_size : -1;
    for (int64_t i = start; i < start + count; i++) {
        int64_t b = i / block_size;
        float s = scales[b];
        float v;
        if (mode == LQ_ENCODE_BITSANDBYTES) {
            // bitsandbytes multiplies full blocks by 1/absmax (absmax clamped to 1e-38) but
            // divides the short last block; both clamp to [-1, 1].
            float a = s < 1e-38f ? 1e-38f : s;
            v = b == short_block ? w[i] / a : w[i] * (1.0f / a);
            v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
        } else {
            v = w[i] / s;
            if (v != v) v = 0.0f;  // an all-zero block: 0/0, and its scale decodes every code to 0
        }
        lq_put_code(packed, bits, i, lq_nearest_code(v, midpoints, n_codes));
    }
}

double lq_block_error_scalar(const float *w, const float *fisher, int64_t start, int64_t count, int32_t block_size,
                             const float *scales, const float *midpoints, const float *codebook, int bits) {
    double acc[8] = {0};
    for (int64_t i = start; i < start + count; i++)
        acc[(i - start) & 7] += lq_block_error_element(w, fisher, i, scales[i / block_size], midpoints, codebook, bits);
    return lq_lane_total(acc);
}

void lq_bnb_build_lut(const float *code, uint8_t *lut) {
    enum { LUT = 65536 };
    float mid[255];
    for (int i = 0; i < 255; i++) mid[i] = 0.5f * (code[i] + code[i + 1]);
    int c = 0;
    for (int i = 0; i < LUT; i++) {
        float v = -1.0f + (2.0f * (float)i) / (float)(LUT - 1);
        while (c < 255 && mid[c] < v) c++;
        lut[i] = (uint8_t)c;
    }
}

void lq_bnb_encode8(const float *values, int64_t count, int32_t block_size, const float *absmax,
                    const uint8_t *lut, uint8_t *out) {
    for (int64_t i = 0; i < count; i++) {
        float a = absmax[i / block_size];
        if (a == 0.0f) { out[i] = 0; continue; }
        float v = values[i] * (1.0f / a);
        v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
        out[i] = lut[(uint16_t)((v + 1.0f) * 0.5f * 65535.0f + 0.5f)];
    }
}
