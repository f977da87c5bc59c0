/* quant_codec.h — MLX's quantization modes as one table (affine, mxfp4, mxfp8, nvfp4: element
 * codec, group size, bits, scale codec, biases) and the codecs of the floating-point modes (fp4
 * e2m1, fp8 e4m3, e8m0 scales, the group quantizer), plain C usable on the host and, compiled
 * as CUDA C++ (or the simulator), on the device: the CPU and GPU kernels share them bit for bit. */
#ifndef PONTE_BACKEND_CPU_QUANT_CODEC_H
#define PONTE_BACKEND_CPU_QUANT_CODEC_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "backend/host_device.h"

/* Element codecs: unsigned integers (affine), fp4 e2m1, fp8 e4m3. */
enum { PNK_ELEM_UINT = 0, PNK_ELEM_E2M1 = 1, PNK_ELEM_E4M3 = 2 };
/* Scale codecs: floats of the matrix's dtype (affine), e8m0 (uint8 power of two 2^(s - 127)),
 * e4m3 (uint8 fp8). */
enum { PNK_SCALE_FLOAT = 0, PNK_SCALE_E8M0 = 1, PNK_SCALE_E4M3 = 2 };

/* The modes: X(ID, name, default group size, default bits, element codec, scale codec, biases,
 * largest element value). The floating-point modes fix their group size and bits. */
#define PNK_QUANT_MODES(X)                                                                     \
    X(AFFINE, "affine", 64, 4, PNK_ELEM_UINT, PNK_SCALE_FLOAT, true, 0.0f)                     \
    X(MXFP4, "mxfp4", 32, 4, PNK_ELEM_E2M1, PNK_SCALE_E8M0, false, 6.0f)                       \
    X(MXFP8, "mxfp8", 32, 8, PNK_ELEM_E4M3, PNK_SCALE_E8M0, false, 448.0f)                     \
    X(NVFP4, "nvfp4", 16, 4, PNK_ELEM_E2M1, PNK_SCALE_E4M3, false, 6.0f)

#define PNK_QMODE_ENUM(id, name, gs, bits, elem, scale, biases, maxv) PNK_QMODE_##id,
enum { PNK_QUANT_MODES(PNK_QMODE_ENUM) PNK_QMODE_COUNT };
#undef PNK_QMODE_ENUM

/* One mode's description. */
typedef struct pnK_qmode {
    const char *name;
    int group_size, bits; /* defaults; the only values for the floating-point modes */
    int elem, scale;      /* PNK_ELEM_*, PNK_SCALE_* */
    bool biases;          /* scales and biases (affine) or scales only */
    float elem_max;       /* largest element magnitude (fp modes) */
} pnK_qmode;

/* MLX's affine quantization of a group whose values span [w_min, w_max] at `bits` (float
 * arithmetic, rint: half to even, eps 1e-7): its scale and bias. 1 bit spans the range from
 * the minimum; otherwise the end of larger magnitude lands exactly on a level. */
PNK_HD void pnK_affine_params(float w_min, float w_max, int bits, float *scale_out,
                              float *bias_out)
{
    const float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    float scale, bias;
    if (bits == 1) {
        float d = w_max - w_min;
        scale = d < eps ? eps : d;
        bias = w_min;
    } else {
        bool neg = fabsf(w_min) > fabsf(w_max);
        float d = (w_max - w_min) / n_bins;
        scale = d < eps ? eps : d;
        scale = neg ? scale : -scale;
        float edge = neg ? w_min : w_max;
        float q0 = rintf(edge / scale);
        bias = 0;
        if (q0 != 0) scale = edge / q0, bias = edge;
    }
    *scale_out = scale, *bias_out = bias;
}

/* The affine level of x: rint((x - bias) / scale) clamped to [0, 2^bits - 1]. */
PNK_HD uint32_t pnK_affine_level(float x, float scale, float bias, int bits)
{
    const float n_bins = (float)((1 << bits) - 1);
    float r = rintf((x - bias) / scale);
    r = r < 0.0f ? 0.0f : r;
    return (uint32_t)(n_bins < r ? n_bins : r);
}

/* The description of mode id (PNK_QMODE_*), on the host or the device. */
PNK_HD pnK_qmode pnK_qmode_of(int id)
{
#define PNK_QMODE_CASE(id, nm, gs, b, el, sc, bi, mv)                                          \
    case PNK_QMODE_##id: {                                                                     \
        pnK_qmode m = {nm, gs, b, el, sc, bi, mv};                                             \
        return m;                                                                              \
    }
    switch (id) {
        PNK_QUANT_MODES(PNK_QMODE_CASE)
    }
#undef PNK_QMODE_CASE
    pnK_qmode none = {"", 0, 0, 0, 0, false, 0.0f};
    return none;
}

/* The mode named name (NULL or "": affine), or -1 (host only). */
static inline int pnK_qmode_find(const char *name)
{
    if (!name || !*name) return PNK_QMODE_AFFINE;
    for (int i = 0; i < PNK_QMODE_COUNT; i++)
        if (!strcmp(pnK_qmode_of(i).name, name)) return i;
    return -1;
}

/* ───────────────────────────── rounding to a dtype ───────────────────────────── */
/* The floating dtype a computation rounds to after each operation, as MLX's CPU evaluates
 * half types (in float, rounded back): PNK_RT_F32, F16, BF16 (float then half), F64. */
enum { PNK_RT_F32 = 0, PNK_RT_F16 = 1, PNK_RT_BF16 = 2, PNK_RT_F64 = 3 };

PNK_HD uint32_t pnK_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
PNK_HD float pnK_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f rounded to bfloat16 (nearest even; NaN stays NaN), as a float. */
PNK_HD float pnK_round_bf16(float f)
{
    uint32_t u = pnK_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return pnK_bits_f32(u);
}

/* f rounded to float16 (nearest even, overflow to inf, subnormals), as a float. */
PNK_HD float pnK_round_f16(float f)
{
    float a = fabsf(f);
    if (!(a == a) || a == INFINITY) return f;
    if (a >= 65520.0f) return copysignf(INFINITY, f); /* 65504 + half an ulp */
    /* the spacing of float16 values around a: 2^(e - 10), at least 2^-24 */
    int e;
    frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) */
    int sh = e - 1 - 10;
    if (sh < -24) sh = -24;
    float q = ldexpf(1.0f, sh);
    float r = rintf(a / q) * q; /* a / q and the product are exact: q is a power of two */
    return copysignf(r, f);
}

/* v rounded to the kind's dtype (through float for the half types). */
PNK_HD double pnK_rt(double v, int kind)
{
    switch (kind) {
    case PNK_RT_F64: return v;
    case PNK_RT_F16: return pnK_round_f16((float)v);
    case PNK_RT_BF16: return pnK_round_bf16((float)v);
    default: return (float)v;
    }
}

/* ───────────────────────────── element codecs ───────────────────────────── */

/* The fp4 e2m1 value of code c (0..15): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives. */
PNK_HD float pnK_e2m1_value(int c)
{
    const int m = c & 7;
    const float v = m < 4 ? 0.5f * (float)m : (float)(1 << (m / 2 - 1)) * (m & 1 ? 1.5f : 1.0f);
    return c & 8 ? -v : v;
}

/* The fp8 e4m3 value of code c (0..255), as MLX reads it: no NaN (0x7f is 480). */
PNK_HD float pnK_e4m3_value(int c)
{
    const int e = (c >> 3) & 15, m = c & 7;
    const float v = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
    return c & 128 ? -v : v;
}

/* f as fp8 e4m3, as MLX's to_fp8: nearest, ties to even; magnitudes above 448 (and inf, NaN)
 * saturate to 448 (0x7e) with f's sign. */
PNK_HD uint8_t pnK_e4m3_code(float f)
{
    const uint8_t sign = pnK_f32_bits(f) >> 31 ? 0x80 : 0;
    float a = fabsf(f);
    if (!(a <= 448.0f)) return 0x7e | sign;
    if (a < 0.015625f) { /* subnormals: multiples of 2^-9 */
        return (uint8_t)rintf(a * 512.0f) | sign;
    }
    int e;
    frexpf(a, &e); /* a in [2^(e-1), 2^e) */
    const float q = ldexpf(1.0f, e - 1 - 3); /* spacing: 3 mantissa bits */
    float r = rintf(a / q);                  /* 8..16 */
    int be = e - 1 + 7;
    int code = r >= 16.0f ? ((be + 1) << 3) : ((be << 3) | ((int)r - 8));
    return (uint8_t)(code > 0x7e ? 0x7e : code) | sign;
}

/* The value of element code c under codec elem (affine: c itself). */
PNK_HD float pnK_elem_value(int elem, int c)
{
    return elem == PNK_ELEM_E2M1 ? pnK_e2m1_value(c)
           : elem == PNK_ELEM_E4M3 ? pnK_e4m3_value(c)
                                   : (float)c;
}

/* The scale of code c under codec scale (e8m0: 2^(c - 127); e4m3), as a double (2^128 for
 * c = 255 rounds to inf in every dtype). */
PNK_HD double pnK_scale_value(int scale, int c)
{
    return scale == PNK_SCALE_E8M0 ? ldexp(1.0, c - 127) : (double)pnK_e4m3_value(c);
}

/* ───────────────────────────── fp group quantizer ───────────────────────────── */

/* Quantizes one group of n values v (exact values of dtype kind) in mode m (a floating-point
 * mode) as MLX 0.32.4's CPU quantize computes it, rounding to kind after each operation:
 * amax = max |v| (NaN if any is NaN), s = amax / elem_max;
 *   e8m0: e = ceil(float(log2 s)) (0 when s = 0), code e + 127 (mod 256), divisor 2^e in
 *         kind; a non-finite s gives divisor 0 and code 128 (float32, float64) or 0 (halves);
 *   e4m3: code = e4m3(s) (with a global scale g: e4m3(float(s * (2688 / g)))), divisor
 *         its value in kind;
 * each x = v / divisor (with g: then times 2688 / g in float32, the rest in float32) becomes the fp4 code of the first of 0, .5, .., 6, -0, .., -6 nearest
 * in kind's arithmetic (NaN, inf: 0), or the fp8 code of x. codes[i] gets the n element codes,
 * *scale_code the scale's. gscale <= 0: none. */
PNK_HD void pnK_fp_quantize_group(const pnK_qmode *m, int kind, const double *v, int n,
                                  float gscale, uint8_t *codes, uint8_t *scale_code)
{
    double amax = 0;
    bool any_nan = false;
    for (int i = 0; i < n; i++) {
        const double a = fabs(v[i]);
        any_nan |= !(a == a);
        amax = a > amax ? a : amax;
    }
    if (any_nan) amax = NAN;
    int ek = gscale > 0 ? PNK_RT_F32 : kind; /* with a global scale the elements are float32 */
    const double s = pnK_rt(amax / (double)m->elem_max, kind);
    double div;
    if (m->scale == PNK_SCALE_E8M0) {
        if (s == 0) {
            *scale_code = 127, div = 1;
        } else if (!(s - s == 0)) { /* inf, NaN: MLX's int32 conversion gives INT_MIN */
            *scale_code = kind == PNK_RT_F32 || kind == PNK_RT_F64 ? 128 : 0, div = 0;
        } else {
            const int e = (int)ceilf((float)log2(s));
            *scale_code = (uint8_t)((e + 127) & 0xff);
            div = pnK_rt(ldexp(1.0, e), kind);
        }
    } else {
        *scale_code = pnK_e4m3_code(gscale > 0 ? (float)s * (2688.0f / gscale) : (float)s);
        div = pnK_rt(pnK_e4m3_value(*scale_code), kind);
    }
    for (int i = 0; i < n; i++) {
        double x = pnK_rt(v[i] / div, kind);
        if (gscale > 0) x = (float)(x * (2688.0f / gscale));
        if (m->elem == PNK_ELEM_E4M3) {
            codes[i] = pnK_e4m3_code((float)x);
            continue;
        }
        int best = 0;
        double bd = fabs(pnK_rt(x, ek));
        for (int c = 1; c < 16; c++) {
            const double d = fabs(pnK_rt(x - (double)pnK_e2m1_value(c), ek));
            if (d < bd) bd = d, best = c;
        }
        codes[i] = (uint8_t)best;
    }
}

#endif /* PONTE_BACKEND_CPU_QUANT_CODEC_H */
