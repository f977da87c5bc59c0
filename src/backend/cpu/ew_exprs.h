/* ew_exprs.h — what one element of every elementwise op computes, per dtype: the dtype list,
 * the expression tables (an X-macro row per op, a column per class of dtypes) and the element
 * functions generated from them. Included by the CPU's row kernels (elementwise.c) and by the
 * C source generated for fused programs (fused_jit.c), which is why it depends on nothing but
 * ponte.h and two small core headers. */
#ifndef PONTE_BACKEND_CPU_EW_EXPRS_H
#define PONTE_BACKEND_CPU_EW_EXPRS_H

#include "backend/cpu/ew_ops.h"
#include "core/erfinv.h"
#include "core/half.h"
#include "ponte.h"

#include <float.h>
#include <tgmath.h> /* sqrt(v) picks sqrtf / sqrt / csqrtf from v's type */

typedef float _Complex pn_complex64; /* as core.h */

/* The expression tables are instantiated for every dtype of a class, bool and unsigned
 * included; comparisons that are constant for some of them are intended. */
#ifdef __clang__
#pragma clang diagnostic ignored "-Wunknown-warning-option"
#endif
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wbool-compare"
#pragma GCC diagnostic ignored "-Wint-in-bool-context"
#pragma GCC diagnostic ignored "-Wbool-operation"

/* Generated row functions a table leaves unused (clang warns about unused static inline). */
#define PNK_UNUSED __attribute__((unused))

#ifdef _OPENMP
#define PNK_SIMD _Pragma("omp simd")
#else
#define PNK_SIMD _Pragma("GCC ivdep")
#endif

/* A row function: n elements; p[0] is the output, p[1..] the inputs; s their strides in
 * elements (0 for a broadcast scalar). */
typedef void (*pnK_row_fn)(int64_t n, char *const *p, const int64_t *s, const pnK_ew_params *prm);

/* ───────────────────────────── preprocessor helpers ───────────────────────────── */

#define PNK_CAT_(a, b) a##b
#define PNK_CAT(a, b) PNK_CAT_(a, b)
#define PNK_ID(x) (x)

/* A table column is E(expression), NA (the op does not exist for that class of dtypes) or,
 * for the float class, V(name, expression): float32/f16/bf16 rows run vmath.h's
 * pnV_<name>_f32, float64 rows the expression. */
#define PNK_HAS_NA 0
#define PNK_HAS_E(...) 1
#define PNK_HAS_V(...) 1
#define PNK_HAS(col) PNK_CAT(PNK_HAS_, col)
#define PNK_EXPR_NA 0
#define PNK_EXPR_E(...) (__VA_ARGS__)
#define PNK_EXPR_V(name, ...) (__VA_ARGS__)
#define PNK_EXPR(col) PNK_CAT(PNK_EXPR_, col)
#define PNK_ISV_NA 0
#define PNK_ISV_E(...) 0
#define PNK_ISV_V(...) 1
#define PNK_ISV(col) PNK_CAT(PNK_ISV_, col)
#define PNK_VFN_NA pnV_exp_f32 /* never called: PNK_ISV is 0 */
#define PNK_VFN_E(...) pnV_exp_f32
#define PNK_VFN_V(name, ...) pnV_##name##_f32
#define PNK_VFN(col) PNK_CAT(PNK_VFN_, col)
#define PNK_FON(has, fn) PNK_CAT(PNK_FON_, has)(fn)
#define PNK_FON_1(fn) fn
#define PNK_FON_0(fn) NULL

/* Classes of dtypes: KFLT (f16, f32, f64, bf16: computed in float or double), KCPX
 * (complex64), KINT (bool and the integers). Columns are given in that order. */
#define PNK_COL(CLS, f, c, i) PNK_COL_##CLS(f, c, i)
#define PNK_COL_KFLT(f, c, i) f
#define PNK_COL_KCPX(f, c, i) c
#define PNK_COL_KINT(f, c, i) i

/* Output rules: OSAME (the input's storage type), OBOOL, OREAL (complex64 gives float). */
#define PNK_OT(RULE, T, CLS) PNK_OT_##RULE(T, CLS)
#define PNK_OT_OSAME(T, CLS) T
#define PNK_OT_OBOOL(T, CLS) bool
#define PNK_OT_OREAL(T, CLS) PNK_OT_REAL_##CLS(T)
#define PNK_OT_REAL_KCPX(T) float
#define PNK_OT_REAL_KFLT(T) T
#define PNK_OT_REAL_KINT(T) T
#define PNK_OST(RULE, ST, CLS) PNK_OST_##RULE(ST, CLS)
#define PNK_OST_OSAME(ST, CLS) ST
#define PNK_OST_OBOOL(ST, CLS) PNK_ID
#define PNK_OST_OREAL(ST, CLS) PNK_OST_REAL_##CLS(ST)
#define PNK_OST_REAL_KCPX(ST) PNK_ID
#define PNK_OST_REAL_KFLT(ST) ST
#define PNK_OST_REAL_KINT(ST) ST

/* ───────────────────────────── dtypes ───────────────────────────── */

/* X(ENUM, short name, storage type, compute type, load, store, class, ...). */
#define PNK_TYPES(X, ...)                                                                      \
    X(PN_BOOL, b8, bool, bool, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                              \
    X(PN_UINT8, u8, uint8_t, uint8_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                       \
    X(PN_UINT16, u16, uint16_t, uint16_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                   \
    X(PN_UINT32, u32, uint32_t, uint32_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                   \
    X(PN_UINT64, u64, uint64_t, uint64_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                   \
    X(PN_INT8, i8, int8_t, int8_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                          \
    X(PN_INT16, i16, int16_t, int16_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                      \
    X(PN_INT32, i32, int32_t, int32_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                      \
    X(PN_INT64, i64, int64_t, int64_t, PNK_ID, PNK_ID, KINT, __VA_ARGS__)                      \
    X(PN_FLOAT16, f16, pn_float16, float, pnC_f16_to_f32, pnC_f32_to_f16, KFLT, __VA_ARGS__)   \
    X(PN_FLOAT32, f32, float, float, PNK_ID, PNK_ID, KFLT, __VA_ARGS__)                        \
    X(PN_FLOAT64, f64, double, double, PNK_ID, PNK_ID, KFLT, __VA_ARGS__)                      \
    X(PN_BFLOAT16, bf16, pn_bfloat16, float, pnC_bf16_to_f32, pnC_f32_to_bf16, KFLT,           \
      __VA_ARGS__)                                                                             \
    X(PN_COMPLEX64, c64, pn_complex64, pn_complex64, PNK_ID, PNK_ID, KCPX, __VA_ARGS__)

/* ───────────────────────────── scalar helpers ───────────────────────────── */

/* Whether x's (integer) type is signed: a constant the compiler folds. */
#define PNK_SIGNED(x) ((__typeof__(x))-1 < (__typeof__(x))0)

/* Integer floor division and remainder with Python's signs; x // 0 and x % 0 give 0 (C would
 * trap), INT_MIN // -1 wraps. */
static inline int64_t pnK_sfloordiv(int64_t a, int64_t b)
{
    if (b == 0) return 0;
    if (b == -1) return (int64_t)(0 - (uint64_t)a);
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}
static inline uint64_t pnK_ufloordiv(uint64_t a, uint64_t b) { return b ? a / b : 0; }
static inline int64_t pnK_srem(int64_t a, int64_t b)
{
    if (b == 0 || b == -1) return 0;
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}
static inline uint64_t pnK_urem(uint64_t a, uint64_t b) { return b ? a % b : 0; }
#define PNK_IFLOORDIV(a, b)                                                                    \
    (PNK_SIGNED(a) ? (__typeof__(a))pnK_sfloordiv((int64_t)(a), (int64_t)(b))                  \
                   : (__typeof__(a))pnK_ufloordiv((uint64_t)(a), (uint64_t)(b)))
#define PNK_IREM(a, b)                                                                         \
    (PNK_SIGNED(a) ? (__typeof__(a))pnK_srem((int64_t)(a), (int64_t)(b))                       \
                   : (__typeof__(a))pnK_urem((uint64_t)(a), (uint64_t)(b)))

/* Integer arithmetic that wraps like the hardware (signed overflow is undefined in C);
 * computed in uint64_t and truncated, which the vectorizer narrows back to the type. */
#define PNK_WRAP(a, OP, b) ((__typeof__(a))((uint64_t)(a) OP (uint64_t)(b)))

/* Integer power by squaring (wrapping like the type's multiply); negative exponents give
 * 0 except for bases 1 and -1. */
static inline uint64_t pnK_upow(uint64_t base, uint64_t e)
{
    uint64_t r = 1;
    while (e) {
        if (e & 1) r *= base;
        e >>= 1;
        base *= base;
    }
    return r;
}
static inline int64_t pnK_spow(int64_t a, int64_t b)
{
    if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
    return (int64_t)pnK_upow((uint64_t)a, (uint64_t)b);
}
#define PNK_IPOW(a, b)                                                                         \
    (PNK_SIGNED(a) ? (__typeof__(a))pnK_spow((int64_t)(a), (int64_t)(b))                       \
                   : (__typeof__(a))pnK_upow((uint64_t)(a), (uint64_t)(b)))

/* Shifts by counts outside [0, 64) give 0 (or -1 for a negative signed right shift) instead
 * of C's undefined behaviour. */
static inline uint64_t pnK_shl(uint64_t a, int64_t b) { return (b < 0 || b > 63) ? 0 : a << b; }
static inline int64_t pnK_sshr(int64_t a, int64_t b)
{
    return (b < 0 || b > 63) ? (a < 0 ? -1 : 0) : a >> b;
}
static inline uint64_t pnK_ushr(uint64_t a, int64_t b) { return (b < 0 || b > 63) ? 0 : a >> b; }
#define PNK_SHL(a, b) ((__typeof__(a))pnK_shl((uint64_t)(a), (int64_t)(b)))
#define PNK_SHR(a, b)                                                                          \
    (PNK_SIGNED(a) ? (__typeof__(a))pnK_sshr((int64_t)(a), (int64_t)(b))                       \
                   : (__typeof__(a))pnK_ushr((uint64_t)(a), (int64_t)(b)))

/* Float helpers, one body for float and double (tgmath picks the precision). */
#define PNK_FLOAT_HELPERS(T, SFX)                                                              \
    /* Remainder with the sign of the divisor (Python's %). */                                 \
    static inline T pnK_frem_##SFX(T a, T b)                                                   \
    {                                                                                          \
        T r = fmod(a, b);                                                                      \
        if (r != 0 && ((r < 0) != (b < 0))) r += b;                                            \
        return r;                                                                              \
    }                                                                                          \
    /* log(exp(a) + exp(b)) without overflow; infinities and NaN handled exactly. */           \
    static inline T pnK_logaddexp_##SFX(T a, T b)                                              \
    {                                                                                          \
        T hi = a > b ? a : b, lo = a > b ? b : a;                                              \
        if (lo != lo) return lo;                                                               \
        if (hi == (T)INFINITY || lo == -(T)INFINITY) return hi;                                \
        return hi + log1p(exp(lo - hi));                                                       \
    }
PNK_FLOAT_HELPERS(float, f)
PNK_FLOAT_HELPERS(double, d)
#define PNK_FREM(a, b) _Generic((a), float: pnK_frem_f, default: pnK_frem_d)(a, b)
#define PNK_LOGADDEXP(a, b) _Generic((a), float: pnK_logaddexp_f, default: pnK_logaddexp_d)(a, b)
/* erfinv: one definition for every backend (core/erfinv.h). */
#define PNK_ERFINV(v) _Generic((v), float: pn_erfinv_f32, default: pn_erfinv_f64)(v)

/* The complex64 product a * b with no multiply-add left for a compiler to contract: each part
 * is one fma, so the library's kernels (built with contraction) and the generated C of fused
 * programs (built without) give the same bits. When both parts come out NaN, C's product
 * recovers Annex G's infinities. */
static inline pn_complex64 pnK_cmul(pn_complex64 a, pn_complex64 b)
{
    float ar = crealf(a), ai = cimagf(a), br = crealf(b), bi = cimagf(b);
    float re = fmaf(ar, br, -(ai * bi)), im = fmaf(ar, bi, ai * br);
    if (re != re && im != im) return a * b;
    return CMPLXF(re, im);
}

/* a / b for complex64: C's division, except that a finite a over an infinite b is a zero of
 * Annex G's signs (C's library recovers that case only when both parts of its first quotient
 * are NaN, so a huge finite a gave (nan, 0); the GPU's division gives the zero). The signs
 * come from the sums in double, as the GPU's. */
static inline pn_complex64 pnK_cdiv(pn_complex64 a, pn_complex64 b)
{
    pn_complex64 q = a / b;
    float ar = crealf(a), ai = cimagf(a), br = crealf(b), bi = cimagf(b);
    if ((crealf(q) != crealf(q) || cimagf(q) != cimagf(q)) && isfinite(ar) && isfinite(ai) &&
        (isinf(br) || isinf(bi))) {
        double c = copysign(isinf(br) ? 1.0 : 0.0, br), d = copysign(isinf(bi) ? 1.0 : 0.0, bi);
        /* in double: a's float parts cannot overflow the sums (as the GPU's) */
        return CMPLXF((float)(0.0 * (ar * c + ai * d)), (float)(0.0 * (ai * c - ar * d)));
    }
    return q;
}

/* a ** b for complex64: cpow in double, rounded once (cpowf's exp(b log a) in float loses
 * |b log a| ulps where the result is large; the GPU's png_cpow computes in double too). */
static inline pn_complex64 pnK_cpow(pn_complex64 a, pn_complex64 b)
{
    return (pn_complex64)cpow((double _Complex)a, (double _Complex)b);
}

/* log(1 + z) for complex64, accurate near z = 0: Re = log|1 + z| = log1p(2x + x^2 + y^2) / 2
 * in double (no overflow for float parts; one fma, so contraction cannot change it), Im =
 * arg(1 + z). */
static inline pn_complex64 pnK_clog1p(pn_complex64 z)
{
    double x = crealf(z), y = cimagf(z);
    return CMPLXF((float)(0.5 * log1p(fma(x, 2 + x, y * y))), (float)atan2(y, 1 + x));
}

/* logaddexp for complex64 as MLX: NaN if a part is NaN; with hi/lo the larger/smaller operand
 * (real part, then imaginary), hi + log1p(exp(lo - hi)), hi itself when lo's real part is -inf
 * or hi's is +inf. The imaginary part is hi's plus an angle in [-pi, pi], not wrapped further. */
static inline pn_complex64 pnK_clogaddexp(pn_complex64 a, pn_complex64 b)
{
    if (a != a || b != b) return CMPLXF(NAN, NAN);
    bool agt = crealf(a) > crealf(b) || (crealf(a) == crealf(b) && cimagf(a) > cimagf(b));
    pn_complex64 hi = agt ? a : b, lo = agt ? b : a;
    if (crealf(lo) == -INFINITY || crealf(hi) == INFINITY) return hi;
    float m = expf(crealf(lo) - crealf(hi)), d = cimagf(lo) - cimagf(hi);
    return hi + pnK_clog1p(CMPLXF(m * cosf(d), m * sinf(d)));
}

/* |a - b| <= atol + rtol * |b| (prm: p0 = rtol, p1 = atol, flag = equal_nan), with equal
 * infinities close and other infinities not. The bound is one fma, so that it is the same
 * bits whether or not a compiler contracts (the generated C of fused programs does not). */
static inline bool pnK_isclose_f64(double a, double b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (a != a || b != b) return prm->flag && a != a && b != b;
    if (isinf(a) || isinf(b)) return false;
    return fabs(a - b) <= fma(prm->p0, fabs(b), prm->p1);
}
static inline bool pnK_isclose_c64(pn_complex64 a, pn_complex64 b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (a != a || b != b) return prm->flag && a != a && b != b;
    if (isinf(crealf(a)) || isinf(cimagf(a)) || isinf(crealf(b)) || isinf(cimagf(b)))
        return false;
    return cabs((double _Complex)a - (double _Complex)b) <=
           fma(prm->p0, cabs((double _Complex)b), prm->p1);
}

/* ───────────────────────────── the op tables ───────────────────────────── */

/* Unary: X(OP, output rule, float, complex, integer/bool). v is the input in the compute
 * type, prm the node's params. */
#define PNK_UNARY_EXPRS(X)                                                                     \
    X(ABS, OREAL, E(fabs(v)), E(cabsf(v)), E(v > 0 ? v : PNK_WRAP(v, *, -1)))                  \
    X(NEGATIVE, OSAME, E(-v), E(-v), E(PNK_WRAP(v, *, -1)))                                    \
    X(SIGN, OSAME, E(v > 0 ? 1 : v < 0 ? -1 : v), E(v == 0 ? 0 : v / cabsf(v)),                \
      E(v > 0 ? 1 : v < 0 ? -1 : 0))                                                           \
    X(SQRT, OSAME, E(sqrt(v)), E(sqrt(v)), NA)                                                 \
    X(RSQRT, OSAME, E(1 / sqrt(v)), E(1 / sqrt(v)), NA)                                        \
    X(SQUARE, OSAME, E(v * v), E(pnK_cmul(v, v)), E(PNK_WRAP(v, *, v)))                       \
    X(EXP, OSAME, V(exp, exp(v)), E(exp(v)), NA)                                               \
    X(EXPM1, OSAME, V(expm1, expm1(v)), NA, NA)                                                \
    X(LOG, OSAME, V(log, log(v)), E(log(v)), NA)                                               \
    X(LOG1P, OSAME, V(log1p, log1p(v)), E(pnK_clog1p(v)), NA)                                  \
    X(LOG2, OSAME, V(log2, log2(v)), E(log(v) / 0.693147180559945309f), NA)                    \
    X(LOG10, OSAME, E(log10(v)), E(log(v) / 2.30258509299404568f), NA)                         \
    X(SIN, OSAME, V(sin, sin(v)), E(sin(v)), NA)                                               \
    X(COS, OSAME, V(cos, cos(v)), E(cos(v)), NA)                                               \
    X(TAN, OSAME, E(tan(v)), E(tan(v)), NA)                                                    \
    X(ARCSIN, OSAME, E(asin(v)), E(asin(v)), NA)                                               \
    X(ARCCOS, OSAME, E(acos(v)), E(acos(v)), NA)                                               \
    X(ARCTAN, OSAME, E(atan(v)), E(atan(v)), NA)                                               \
    X(SINH, OSAME, E(sinh(v)), E(sinh(v)), NA)                                                 \
    X(COSH, OSAME, E(cosh(v)), E(cosh(v)), NA)                                                 \
    X(TANH, OSAME, V(tanh, tanh(v)), E(tanh(v)), NA)                                           \
    X(ARCSINH, OSAME, E(asinh(v)), E(asinh(v)), NA)                                            \
    X(ARCCOSH, OSAME, E(acosh(v)), E(acosh(v)), NA)                                            \
    X(ARCTANH, OSAME, E(atanh(v)), E(atanh(v)), NA)                                            \
    X(FLOOR, OSAME, E(floor(v)), NA, E(v))                                                     \
    X(CEIL, OSAME, E(ceil(v)), NA, E(v))                                                       \
    X(SIGMOID, OSAME, V(sigmoid, 1 / (1 + exp(-v))), NA, NA)                                   \
    X(ERF, OSAME, V(erf, erf(v)), NA, NA)                                                      \
    X(ERFINV, OSAME, E(PNK_ERFINV(v)), NA, NA)                                                 \
    X(LOGICAL_NOT, OBOOL, E(!v), E(!v), E(!v))                                                 \
    X(BITWISE_INVERT, OSAME, NA, NA, E(v ^ (__typeof__(v))-1))                                 \
    X(ISNAN, OBOOL, E(isnan(v)), E(v != v), E(0))                                              \
    X(ISINF, OBOOL, E(isinf(v)), E(isinf(crealf(v)) || isinf(cimagf(v))), E(0))                \
    X(ISFINITE, OBOOL, E(isfinite(v)), E(isfinite(crealf(v)) && isfinite(cimagf(v))), E(1))    \
    X(ISPOSINF, OBOOL, E(v == INFINITY), E(v == INFINITY), E(0))                               \
    X(ISNEGINF, OBOOL, E(v == -INFINITY), E(v == -INFINITY), E(0))                             \
    X(CONJUGATE, OSAME, E(v), E(conjf(v)), E(v))                                               \
    X(REAL, OREAL, E(v), E(crealf(v)), E(v))                                                   \
    X(IMAG, OREAL, E(0), E(cimagf(v)), E(0))                                                   \
    X(ROUND, OSAME,                                                                            \
      E(prm->p0 == 1 ? nearbyint(v) : (__typeof__(v))(nearbyint(v * prm->p0) / prm->p0)), NA,  \
      E(prm->p0 >= 1 ? v : (__typeof__(v))(int64_t)(nearbyint(v * prm->p0) / prm->p0)))        \
    X(NAN_TO_NUM, OSAME,                                                                       \
      E(v != v ? prm->p0 : v == INFINITY ? prm->p1 : v == -INFINITY ? prm->p2 : v), NA, E(v))

/* Binary: X(OP, output rule, float, complex, integer/bool). a, b are the operands in the
 * compute type. */
#define PNK_BINARY_EXPRS(X)                                                                    \
    X(ADD, OSAME, E(a + b), E(a + b), E(PNK_WRAP(a, +, b)))                                    \
    X(SUBTRACT, OSAME, E(a - b), E(a - b), E(PNK_WRAP(a, -, b)))                               \
    X(MULTIPLY, OSAME, E(a * b), E(pnK_cmul(a, b)), E(PNK_WRAP(a, *, b)))                      \
    X(DIVIDE, OSAME, E(a / b), E(pnK_cdiv(a, b)), NA)                                          \
    X(FLOOR_DIVIDE, OSAME, E(floor(a / b)), NA, E(PNK_IFLOORDIV(a, b)))                        \
    X(REMAINDER, OSAME, E(PNK_FREM(a, b)), NA, E(PNK_IREM(a, b)))                              \
    X(POWER, OSAME, E(pow(a, b)), E(pnK_cpow(a, b)), E(PNK_IPOW(a, b)))                       \
    X(MAXIMUM, OSAME, E(a > b || a != a ? a : b), NA, E(a > b ? a : b))                        \
    X(MINIMUM, OSAME, E(a < b || a != a ? a : b), NA, E(a < b ? a : b))                        \
    X(ARCTAN2, OSAME, E(atan2(a, b)), NA, NA)                                                  \
    X(LOGADDEXP, OSAME, E(PNK_LOGADDEXP(a, b)), E(pnK_clogaddexp(a, b)), NA)                   \
    X(EQUAL, OBOOL, E((a == b) | ((prm->flag != 0) & (a != a) & (b != b))),                    \
      E((a == b) | ((prm->flag != 0) & (a != a) & (b != b))), E(a == b))                       \
    X(NOT_EQUAL, OBOOL, E(a != b), E(a != b), E(a != b))                                       \
    X(LESS, OBOOL, E(a < b), NA, E(a < b))                                                     \
    X(LESS_EQUAL, OBOOL, E(a <= b), NA, E(a <= b))                                             \
    X(GREATER, OBOOL, E(a > b), NA, E(a > b))                                                  \
    X(GREATER_EQUAL, OBOOL, E(a >= b), NA, E(a >= b))                                          \
    X(LOGICAL_AND, OBOOL, E(a != 0 && b != 0), E(a != 0 && b != 0), E(a != 0 && b != 0))       \
    X(LOGICAL_OR, OBOOL, E(a != 0 || b != 0), E(a != 0 || b != 0), E(a != 0 || b != 0))        \
    X(BITWISE_AND, OSAME, NA, NA, E(a & b))                                                    \
    X(BITWISE_OR, OSAME, NA, NA, E(a | b))                                                     \
    X(BITWISE_XOR, OSAME, NA, NA, E(a ^ b))                                                    \
    X(LEFT_SHIFT, OSAME, NA, NA, E(PNK_SHL(a, b)))                                             \
    X(RIGHT_SHIFT, OSAME, NA, NA, E(PNK_SHR(a, b)))                                            \
    X(ISCLOSE, OBOOL, E(pnK_isclose_f64(a, b, prm)), E(pnK_isclose_c64(a, b, prm)),            \
      E(pnK_isclose_f64((double)a, (double)b, prm)))

/* ───────────────────────────── element functions ───────────────────────────── */

/* pnK_ue_<OP>_<dtype>(v, prm) and pnK_be_<OP>_<dtype>(a, b, prm): one element of an op from
 * operands in the compute type, the result in the output's storage type (rounded to f16/bf16
 * as a stored element is). The CPU's row functions and the generated C of fused programs
 * both compute through these, so their results are the same bits. */
#define PNK_UNARY_ELEM(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                       \
    PNK_UNARY_ELEM_(SN, CT, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,                  \
                    PNK_COL(CLS, FE, CE, IE))
#define PNK_UNARY_ELEM_(SN, CT, OT, OST, OP, COL)                                              \
    PNK_UNUSED static inline OT pnK_ue_##OP##_##SN(CT v, const pnK_ew_params *prm)             \
    {                                                                                          \
        (void)prm;                                                                             \
        return OST(PNK_EXPR(COL));                                                             \
    }
#define PNK_UNARY_ELEM_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_UNARY_ELEM, OP, RULE, FE, CE, IE)
PNK_UNARY_EXPRS(PNK_UNARY_ELEM_GEN)

#define PNK_BINARY_ELEM(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                      \
    PNK_BINARY_ELEM_(SN, CT, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,                 \
                     PNK_COL(CLS, FE, CE, IE))
#define PNK_BINARY_ELEM_(SN, CT, OT, OST, OP, COL)                                             \
    PNK_UNUSED static inline OT pnK_be_##OP##_##SN(CT a, CT b, const pnK_ew_params *prm)       \
    {                                                                                          \
        (void)prm;                                                                             \
        return OST(PNK_EXPR(COL));                                                             \
    }
#define PNK_BINARY_ELEM_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_BINARY_ELEM, OP, RULE, FE, CE, IE)
PNK_BINARY_EXPRS(PNK_BINARY_ELEM_GEN)

#endif /* PONTE_BACKEND_CPU_EW_EXPRS_H */
