/* half.h — float16 and bfloat16 storage types and their conversions to and from float.
 * Both are 16-bit patterns in a struct so that arithmetic on them cannot happen by accident;
 * kernels convert to float, compute, and convert back (round to nearest even). */
#ifndef PONTE_CORE_HALF_H
#define PONTE_CORE_HALF_H

#include <stdint.h>
#include <string.h>

typedef struct pn_float16 { uint16_t bits; } pn_float16;
typedef struct pn_bfloat16 { uint16_t bits; } pn_bfloat16;

static inline uint32_t pnC_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float pnC_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float pnC_bf16_to_f32(pn_bfloat16 h) { return pnC_bits_f32((uint32_t)h.bits << 16); }

static inline pn_bfloat16 pnC_f32_to_bf16(float f)
{
    uint32_t u = pnC_f32_bits(f);
    pn_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) { /* NaN: keep it quiet */
        h.bits = (uint16_t)((u >> 16) | 0x40u);
        return h;
    }
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    h.bits = (uint16_t)(u >> 16);
    return h;
}

#if defined(__F16C__) && defined(__FLT16_MAX__) && !defined(__cplusplus)
/* The compiler's _Float16 conversions: the F16C instructions (round to nearest even) without
 * the intrinsics header, which costs more to parse than a generated kernel does to compile
 * (backend/cpu/fused_jit.c includes this header), and loops over them vectorize. */
static inline float pnC_f16_to_f32(pn_float16 h)
{
    _Float16 v;
    memcpy(&v, &h.bits, sizeof v);
    return (float)v;
}
static inline pn_float16 pnC_f32_to_f16(float f)
{
    _Float16 v = (_Float16)f;
    pn_float16 h;
    memcpy(&h.bits, &v, sizeof v);
    return h;
}
#elif defined(__F16C__)
#include <immintrin.h>
static inline float pnC_f16_to_f32(pn_float16 h) { return _cvtsh_ss(h.bits); }
static inline pn_float16 pnC_f32_to_f16(float f)
{
    pn_float16 h;
    h.bits = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    return h;
}
#else
static inline float pnC_f16_to_f32(pn_float16 h)
{
    uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16;
    uint32_t exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return pnC_bits_f32(u);
}
static inline pn_float16 pnC_f32_to_f16(float f)
{
    uint32_t u = pnC_f32_bits(f), sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    pn_float16 h;
    if (a > 0x7f800000u) { h.bits = (uint16_t)(sign | 0x7e00u); return h; }
    if (a >= 0x477ff000u) { h.bits = (uint16_t)(sign | 0x7c00u); return h; } /* overflow */
    if (a < 0x38800000u) { /* subnormal or zero: round via float add */
        float t = pnC_bits_f32(a) + 0.5f;
        h.bits = (uint16_t)(sign | (pnC_f32_bits(t) - 0x3f000000u));
        return h;
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xc8000fffu + mant_odd; /* rebias exponent and round to nearest even */
    h.bits = (uint16_t)(sign | (a >> 13));
    return h;
}
#endif

#endif /* PONTE_CORE_HALF_H */
