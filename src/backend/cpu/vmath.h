/* vmath.h — branch-free float32 math for the CPU kernels: exp, expm1, log, log1p, log2, sin,
 * cos, tanh, sigmoid and erf, as inline element functions (selects and integer bit tricks, no
 * calls, so a loop over them vectorizes) and as array functions over float buffers.
 * Accuracy (tests/test_vmath.c): <= 2 ulp for exp/log/sin/cos, <= 4 ulp for the rest. */
#ifndef PONTE_BACKEND_CPU_VMATH_H
#define PONTE_BACKEND_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The element functions are written for the vectorizer: every path is computed and the
 * result selected (c ? a : b on computed values), polynomials are Horner chains that
 * compile to FMAs where the target has them, and 2^n comes from exponent bits.
 *
 * Instruction set: the library is compiled for -march=native by default (AVX2 + FMA here),
 * in which case the loops below are simply compiled for it. A portable build
 * (-DPONTE_NATIVE=OFF, baseline x86-64 = SSE2) would run them 4 floats wide without FMA, so
 * there the array functions are cloned by GCC's target_clones for x86-64-v3 (AVX2, FMA) and
 * the baseline, and picked once at load time (ifunc). Only the array functions are cloned:
 * they are where the time goes, and a clone per row function of every op would double the
 * kernels' code for nothing. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) &&  \
    !defined(__AVX2__)
#define PNV_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PNV_CLONES
#endif

/* The selects only vectorize when GCC may evaluate both sides, which IEEE trap semantics
 * forbid; nothing in Ponte reads the floating-point exception flags, so this header's
 * functions are compiled without them (results are the same IEEE values). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

#ifdef _OPENMP
#define PNV_SIMD _Pragma("omp simd")
#else
#define PNV_SIMD _Pragma("GCC ivdep")
#endif

/* Floats per block of the array functions (and of the kernels' f16/bf16/strided rows). */
#define PNV_BLOCK 1024
/* sin/cos reduce exactly (in double) for |x| <= PNV_TRIG_MAX; the array functions hand
 * larger |x| (and inf) to libm element by element. */
#define PNV_TRIG_MAX 0x1p19f

static inline uint32_t pnV_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline float pnV_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
/* 2^n for an integer n in [-126, 127]. */
static inline float pnV_pow2i(int32_t n) { return pnV_float((uint32_t)(n + 127) << 23); }

/* ln 2 = PNV_LN2_HI + PNV_LN2_LO, the high part with 16 significant bits (so that n * HI is
 * exact for |n| < 256). */
#define PNV_LN2_HI 0x1.62e4p-1f
#define PNV_LN2_LO 1.4286068203e-06f
#define PNV_LOG2E 1.44269502163f

/* ───────────────────────────── exp, expm1 ───────────────────────────── */

/* Reduction x = k ln2 + r, |r| <= ln2/2 (k rounded by the 1.5 * 2^23 trick), and
 * e^r - 1 = r + r^2 q(r) with q a minimax fit (relative error of e^r below 4e-9). */
typedef struct pnV_expred {
    int32_t k;
    float r, em1; /* r and e^r - 1 */
} pnV_expred;

static inline pnV_expred pnV_exp_reduce(float x) /* x in [-104, 89] */
{
    pnV_expred e;
    float t = x * PNV_LOG2E + 0x1.8p23f;
    float kf = t - 0x1.8p23f;
    e.k = (int32_t)(pnV_bits(t) - 0x4B400000u);
    e.r = (x - kf * PNV_LN2_HI) - kf * PNV_LN2_LO;
    float r = e.r;
    float q = 1.381166046e-03f;
    q = q * r + 8.370134979e-03f;
    q = q * r + 4.166852683e-02f;
    q = q * r + 1.666650921e-01f;
    q = q * r + 4.999999404e-01f;
    e.em1 = r + (r * r) * q;
    return e;
}

/* e^x for x in [-104, 89] (no NaN): 2^k (1 + em1), scaled in two steps so that results from
 * the subnormals (k down to -150) to overflow (k = 129) round once. */
static inline float pnV_exp_core(float x)
{
    pnV_expred e = pnV_exp_reduce(x);
    int32_t k1 = e.k >> 1, k2 = e.k - k1;
    return ((1.0f + e.em1) * pnV_pow2i(k1)) * pnV_pow2i(k2);
}

/* Clamps x into [lo, hi]; NaN gives lo. */
static inline float pnV_clamp(float x, float lo, float hi)
{
    float c = x > lo ? x : lo;
    return c < hi ? c : hi;
}

/* e^x: inf above 88.72, 0 below -103.97, subnormal results rounded once, NaN kept. */
static inline float pnV_expf(float x)
{
    float y = pnV_exp_core(pnV_clamp(x, -104.0f, 89.0f));
    return x != x ? x : y;
}

/* e^x - 1 = 2 (h em1 + (h - 1/2)) with h = 2^(k-1): exact for k = 0, no cancellation
 * elsewhere; -1 below -18, x itself for |x| < 2^-25 (keeps -0 and subnormals). */
static inline float pnV_expm1f(float x)
{
    pnV_expred e = pnV_exp_reduce(pnV_clamp(x, -18.0f, 89.0f));
    float h = pnV_pow2i(e.k - 1);
    float y = 2.0f * (h * e.em1 + (h - 0.5f));
    y = x < -18.0f ? -1.0f : y;
    y = fabsf(x) < 0x1p-25f ? x : y;
    return x != x ? x : y;
}

/* ───────────────────────────── log, log1p, log2 ───────────────────────────── */

/* log(1 + f) for f = m - 1, m in [sqrt(1/2), sqrt(2)): with s = f / (2 + f),
 * log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R(s^2))), R the atanh series' tail. */
static inline float pnV_log1p_red(float f)
{
    float s = f / (2.0f + f);
    float z = s * s;
    float R = z * (0.6666666666f + z * (0.4000000000f + z * (0.2857142857f + z * 0.2222222222f)));
    float hfsq = 0.5f * f * f;
    return f - (hfsq - s * (hfsq + R));
}

/* x = 2^e m with m in [sqrt(1/2), sqrt(2)) for a positive normal x (anything else gives
 * garbage that the callers select away). */
static inline float pnV_frexp_sqrt2(float x, int32_t *e)
{
    uint32_t ix = pnV_bits(x);
    int32_t k = (int32_t)(ix - 0x3f3504f3u) >> 23;
    *e = k;
    return pnV_float(ix - ((uint32_t)k << 23));
}

/* The special values every log shares: -inf at 0, NaN below 0, +inf at +inf, NaN kept. */
static inline float pnV_log_special(float x, float y)
{
    y = x == 0.0f ? -INFINITY : y;
    y = x < 0.0f ? NAN : y;
    y = x == INFINITY ? x : y;
    return x != x ? x : y;
}

/* log(x) = e ln2 + log(m); subnormal x is scaled by 2^23 first. */
static inline float pnV_logf(float x)
{
    float xs = x < 0x1p-126f ? x * 0x1p23f : x;
    int32_t e;
    float m = pnV_frexp_sqrt2(xs, &e);
    float ef = (float)e - (x < 0x1p-126f ? 23.0f : 0.0f);
    float y = ef * PNV_LN2_HI + (pnV_log1p_red(m - 1.0f) + ef * PNV_LN2_LO);
    return pnV_log_special(x, y);
}

/* log2(x) = e + log(m) log2(e), the constant split in two floats. */
static inline float pnV_log2f(float x)
{
    float xs = x < 0x1p-126f ? x * 0x1p23f : x;
    int32_t e;
    float m = pnV_frexp_sqrt2(xs, &e);
    float ef = (float)e - (x < 0x1p-126f ? 23.0f : 0.0f);
    float l = pnV_log1p_red(m - 1.0f);
    float y = ef + (l * PNV_LOG2E + l * 1.9259629911e-08f);
    return pnV_log_special(x, y);
}

/* log(1 + x): u = 1 + x rounds; log(u) plus the rounding's first-order correction
 * (x - (u - 1)) / u. x itself for |x| < 2^-24 (keeps -0 and subnormals). */
static inline float pnV_log1pf(float x)
{
    float u = 1.0f + x;
    int32_t e;
    float m = pnV_frexp_sqrt2(u, &e);
    float ef = (float)e;
    float c = (x - (u - 1.0f)) / u;
    float y = ef * PNV_LN2_HI + (pnV_log1p_red(m - 1.0f) + (ef * PNV_LN2_LO + c));
    y = pnV_log_special(u, y);
    y = fabsf(x) < 0x1p-24f ? x : y;
    return x != x ? x : y;
}

/* ───────────────────────────── sin, cos ───────────────────────────── */

/* sin (cosine = 0) or cos (cosine = 1) of x for |x| <= PNV_TRIG_MAX, computed in double:
 * x = k pi/2 + r with pi/2 in two parts (the first of 33 bits, so k * it is exact for
 * k < 2^20), then Taylor polynomials on |r| <= pi/4 (error below 3e-9 relative) and one
 * rounding to float. Larger |x| gives garbage (see the array functions); NaN is kept. */
static inline float pnV_sincosf(float x, int cosine)
{
    double d = (double)pnV_clamp(x, -PNV_TRIG_MAX, PNV_TRIG_MAX);
    double t = d * 0.63661977236758134308 + 0x1.8p52;
    double kd = t - 0x1.8p52;
    int32_t k = (int32_t)kd + cosine;
    double r = (d - kd * 1.57079632673412561417e+00) - kd * 6.07710050650619224932e-11;
    double z = r * r;
    double s = r + (r * z) * (-1.66666666666666666e-01 +
                              z * (8.33333333333333333e-03 +
                                   z * (-1.98412698412698413e-04 + z * 2.75573192239858907e-06)));
    double c = 1.0 + z * (-0.5 + z * (4.16666666666666667e-02 +
                                      z * (-1.38888888888888889e-03 +
                                           z * (2.48015873015873016e-05 +
                                                z * -2.75573192239858907e-07))));
    double v = (k & 1) ? c : s;
    v = (k & 2) ? -v : v;
    float y = (float)v;
    y = x == 0.0f && !cosine ? x : y; /* sin(-0) = -0 */
    return x != x ? x : y;
}
static inline float pnV_sinf(float x) { return pnV_sincosf(x, 0); }
static inline float pnV_cosf(float x) { return pnV_sincosf(x, 1); }

/* ───────────────────────────── tanh, sigmoid, erf ───────────────────────────── */

/* tanh: x + x^3 P(x^2) (minimax) for |x| < 0.625, else sign(x) (1 - 2 / (e^2|x| + 1)),
 * whose subtraction loses at most a factor 0.8 of the error of the quotient. */
static inline float pnV_tanhf(float x)
{
    float z = x * x;
    float p = -5.704990588e-03f;
    p = p * z + 2.063908987e-02f;
    p = p * z + -5.373971537e-02f;
    p = p * z + 1.333144158e-01f;
    p = p * z + -3.333328068e-01f;
    float small = x + (x * z) * p;
    float a = fabsf(x);
    float big = 1.0f - 2.0f / (pnV_exp_core(2.0f * pnV_clamp(a, 0.0f, 10.0f)) + 1.0f);
    big = x < 0.0f ? -big : big;
    float y = a < 0.625f ? small : big;
    y = x == 0.0f ? x : y; /* tanh(-0) = -0 */
    return x != x ? x : y;
}

/* 1 / (1 + e^-x) as (x >= 0 ? 1 : e) / (1 + e), e = e^-|x| <= 1: no overflow, and tiny
 * results (down to the subnormals) keep their precision. */
static inline float pnV_sigmoidf(float x)
{
    float e = pnV_exp_core(-pnV_clamp(fabsf(x), 0.0f, 104.0f));
    float y = (x >= 0.0f ? 1.0f : e) / (1.0f + e);
    return x != x ? x : y;
}

/* erf: x P(x^2) (minimax) for |x| < 1.25; else sign(x) (1 - e^-x^2 Q(1/|x|)), Q a minimax
 * fit of erfc(x) e^x^2 on [1.25, 4] (erfc is at most 0.08 of the result there); 1 beyond. */
static inline float pnV_erff(float x)
{
    float z = x * x;
    float p = 8.261529274e-07f;
    p = p * z + -1.279232310e-05f;
    p = p * z + 1.173580749e-04f;
    p = p * z + -8.519625990e-04f;
    p = p * z + 5.222438835e-03f;
    p = p * z + -2.686570212e-02f;
    p = p * z + 1.128378436e-01f;
    p = p * z + -3.761263788e-01f;
    p = p * z + 1.128379226e+00f;
    float small = x * p;
    float a = pnV_clamp(fabsf(x), 1.0f, 4.0f);
    float t = 1.0f / a;
    float q = 4.306463897e-02f;
    q = q * t + -2.101370096e-01f;
    q = q * t + 4.277363420e-01f;
    q = q * t + -4.149744809e-01f;
    q = q * t + 1.763689145e-02f;
    q = q * t + 5.645045638e-01f;
    q = q * t + -2.336433390e-04f;
    float big = 1.0f - pnV_exp_core(-(a * a)) * q;
    big = x < 0.0f ? -big : big;
    float y = fabsf(x) < 1.25f ? small : big;
    return x != x ? x : y;
}

/* ───────────────────────────── array functions ───────────────────────────── */

/* pnV_<name>_f32(x, y, n): y[i] = name(x[i]) for i < n, float32; y may be x (in place). */
typedef void (*pnV_array_fn)(const float *x, float *y, int64_t n);

#define PNV_ARRAY_FN(NAME, ELEM)                                                               \
    __attribute__((unused)) PNV_CLONES static void pnV_##NAME##_f32(const float *x, float *y,   \
                                                                   int64_t n)                  \
    {                                                                                          \
        PNV_SIMD for (int64_t i = 0; i < n; i++) y[i] = ELEM(x[i]);                            \
    }
PNV_ARRAY_FN(exp, pnV_expf)
PNV_ARRAY_FN(expm1, pnV_expm1f)
PNV_ARRAY_FN(log, pnV_logf)
PNV_ARRAY_FN(log1p, pnV_log1pf)
PNV_ARRAY_FN(log2, pnV_log2f)
PNV_ARRAY_FN(tanh, pnV_tanhf)
PNV_ARRAY_FN(sigmoid, pnV_sigmoidf)
PNV_ARRAY_FN(erf, pnV_erff)

/* sin and cos by blocks: a block with any |x| > PNV_TRIG_MAX (or inf) takes libm for those
 * elements (read before the element is written, so in place works). */
#define PNV_TRIG_ARRAY_FN(NAME, ELEM, LIBM)                                                    \
    __attribute__((unused)) PNV_CLONES static void pnV_##NAME##_f32(const float *x, float *y,   \
                                                                   int64_t n)                  \
    {                                                                                          \
        for (int64_t i0 = 0; i0 < n; i0 += PNV_BLOCK) {                                        \
            const int64_t m = n - i0 < PNV_BLOCK ? n - i0 : PNV_BLOCK;                          \
            const float *xb = x + i0;                                                          \
            float *yb = y + i0;                                                                \
            int far = 0;                                                                       \
            for (int64_t j = 0; j < m; j++) far |= fabsf(xb[j]) > PNV_TRIG_MAX;                \
            if (!far) {                                                                        \
                PNV_SIMD for (int64_t j = 0; j < m; j++) yb[j] = ELEM(xb[j]);                   \
            } else {                                                                           \
                for (int64_t j = 0; j < m; j++)                                                \
                    yb[j] = fabsf(xb[j]) > PNV_TRIG_MAX ? LIBM(xb[j]) : ELEM(xb[j]);           \
            }                                                                                  \
        }                                                                                      \
    }
PNV_TRIG_ARRAY_FN(sin, pnV_sinf, sinf)
PNV_TRIG_ARRAY_FN(cos, pnV_cosf, cosf)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif /* PONTE_BACKEND_CPU_VMATH_H */
