/* elementwise.c — CPU kernels of every elementwise op (unary, binary, divmod, where).
 * One machinery: a table of ops x dtypes (X-macros) generates a typed row function per pair
 * (an inner loop the compiler vectorizes: no per-element function pointers), and one driver
 * runs rows over the output: a flat threaded loop when every input is dense or a scalar,
 * else broadcast strides through pnC_nditer. f16/bf16 compute in float. Transcendental ops
 * on float32 (and f16/bf16, through blocks of floats) use the vector math of vmath.h. */
#include "backend/cpu/elementwise.h"

#include "backend/cpu/vmath.h"
#include "core/erfinv.h"

#include <float.h>
#include <tgmath.h> /* sqrt(v) picks sqrtf / sqrt / csqrtf from v's type */
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* |a - b| <= atol + rtol * |b| (prm: p0 = rtol, p1 = atol, flag = equal_nan), with equal
 * infinities close and other infinities not. */
static inline bool pnK_isclose_f64(double a, double b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (a != a || b != b) return prm->flag && a != a && b != b;
    if (isinf(a) || isinf(b)) return false;
    return fabs(a - b) <= prm->p1 + prm->p0 * fabs(b);
}
static inline bool pnK_isclose_c64(pn_complex64 a, pn_complex64 b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (a != a || b != b) return prm->flag && a != a && b != b;
    if (isinf(crealf(a)) || isinf(cimagf(a)) || isinf(crealf(b)) || isinf(cimagf(b)))
        return false;
    return cabs((double _Complex)a - (double _Complex)b) <=
           prm->p1 + prm->p0 * cabs((double _Complex)b);
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
    X(SQUARE, OSAME, E(v * v), E(v * v), E(PNK_WRAP(v, *, v)))                                 \
    X(EXP, OSAME, V(exp, exp(v)), E(exp(v)), NA)                                               \
    X(EXPM1, OSAME, V(expm1, expm1(v)), NA, NA)                                                \
    X(LOG, OSAME, V(log, log(v)), E(log(v)), NA)                                               \
    X(LOG1P, OSAME, V(log1p, log1p(v)), NA, NA)                                                \
    X(LOG2, OSAME, V(log2, log2(v)), NA, NA)                                                   \
    X(LOG10, OSAME, E(log10(v)), NA, NA)                                                       \
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
    X(MULTIPLY, OSAME, E(a * b), E(a * b), E(PNK_WRAP(a, *, b)))                               \
    X(DIVIDE, OSAME, E(a / b), E(a / b), NA)                                                   \
    X(FLOOR_DIVIDE, OSAME, E(floor(a / b)), NA, E(PNK_IFLOORDIV(a, b)))                        \
    X(REMAINDER, OSAME, E(PNK_FREM(a, b)), NA, E(PNK_IREM(a, b)))                              \
    X(POWER, OSAME, E(pow(a, b)), E(pow(a, b)), E(PNK_IPOW(a, b)))                             \
    X(MAXIMUM, OSAME, E(a > b || a != a ? a : b), NA, E(a > b ? a : b))                        \
    X(MINIMUM, OSAME, E(a < b || a != a ? a : b), NA, E(a < b ? a : b))                        \
    X(ARCTAN2, OSAME, E(atan2(a, b)), NA, NA)                                                  \
    X(LOGADDEXP, OSAME, E(PNK_LOGADDEXP(a, b)), NA, NA)                                        \
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

/* ───────────────────────────── row functions ───────────────────────────── */

/* A row of a V(...) op in float: dense float32 goes to the array function VF in place;
 * other storage (f16, bf16) and strided rows through a block of floats. */
#define PNK_VROW(T, LD, OST, VF)                                                               \
    do {                                                                                       \
        if (s[0] == 1 && s[1] == 1 && sizeof(T) == sizeof(float)) {                            \
            VF((const float *)x, (float *)y, n);                                               \
            break;                                                                             \
        }                                                                                      \
        float buf[PNV_BLOCK];                                                                  \
        for (int64_t i0 = 0; i0 < n; i0 += PNV_BLOCK) {                                        \
            const int64_t m = n - i0 < PNV_BLOCK ? n - i0 : PNV_BLOCK;                         \
            if (s[1] == 1) {                                                                   \
                PNK_SIMD for (int64_t j = 0; j < m; j++) buf[j] = LD(x[i0 + j]);               \
            } else {                                                                           \
                for (int64_t j = 0; j < m; j++) buf[j] = LD(x[(i0 + j) * s[1]]);               \
            }                                                                                  \
            VF(buf, buf, m);                                                                   \
            if (s[0] == 1) {                                                                   \
                PNK_SIMD for (int64_t j = 0; j < m; j++) y[i0 + j] = OST(buf[j]);              \
            } else {                                                                           \
                for (int64_t j = 0; j < m; j++) y[(i0 + j) * s[0]] = OST(buf[j]);              \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Unary row: y = f(x) over n elements. The element function is inlined into the loops; the
 * dense loop carries no loop dependence (in place is fine: y[i] only depends on x[i]). */
#define PNK_UNARY_FN(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                         \
    PNK_UNARY_FN_(SN, T, CT, LD, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,             \
                  PNK_COL(CLS, FE, CE, IE))
#define PNK_UNARY_FN_(SN, T, CT, LD, OT, OST, OP, COL)                                         \
    static inline OT pnK_ue_##OP##_##SN(CT v, const pnK_ew_params *prm)                        \
    {                                                                                          \
        return OST(PNK_EXPR(COL));                                                             \
    }                                                                                          \
    PNK_UNUSED static inline void pnK_u_##OP##_##SN(int64_t n, char *const *p, const int64_t *s,          \
                                         const pnK_ew_params *prm)                             \
    {                                                                                          \
        const T *x = (const T *)p[1];                                                          \
        OT *y = (OT *)p[0];                                                                    \
        if (PNK_ISV(COL) && sizeof(CT) == sizeof(float)) {                                     \
            PNK_VROW(T, LD, OST, PNK_VFN(COL));                                                \
        } else if (s[0] == 1 && s[1] == 1) {                                                   \
            PNK_SIMD for (int64_t i = 0; i < n; i++) y[i] = pnK_ue_##OP##_##SN(LD(x[i]), prm); \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                y[i * s[0]] = pnK_ue_##OP##_##SN(LD(x[i * s[1]]), prm);                        \
        }                                                                                      \
    }
#define PNK_UNARY_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_UNARY_FN, OP, RULE, FE, CE, IE)
PNK_UNARY_EXPRS(PNK_UNARY_GEN)

/* Binary row: o = f(a, b), with dense loops for the common layouts (both dense, either one a
 * broadcast scalar) and a strided one for the rest. */
#define PNK_BINARY_FN(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                        \
    PNK_BINARY_FN_(SN, T, CT, LD, PNK_OT(RULE, T, CLS), PNK_OST(RULE, ST, CLS), OP,            \
                   PNK_COL(CLS, FE, CE, IE))
#define PNK_BINARY_FN_(SN, T, CT, LD, OT, OST, OP, COL)                                        \
    static inline OT pnK_be_##OP##_##SN(CT a, CT b, const pnK_ew_params *prm)                  \
    {                                                                                          \
        return OST(PNK_EXPR(COL));                                                             \
    }                                                                                          \
    PNK_UNUSED static inline void pnK_b_##OP##_##SN(int64_t n, char *const *p, const int64_t *s,          \
                                         const pnK_ew_params *prm)                             \
    {                                                                                          \
        const T *x = (const T *)p[1], *y = (const T *)p[2];                                    \
        OT *o = (OT *)p[0];                                                                    \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                             \
            PNK_SIMD for (int64_t i = 0; i < n; i++)                                           \
                o[i] = pnK_be_##OP##_##SN(LD(x[i]), LD(y[i]), prm);                            \
        } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                      \
            const CT x0 = LD(x[0]);                                                            \
            PNK_SIMD for (int64_t i = 0; i < n; i++) o[i] = pnK_be_##OP##_##SN(x0, LD(y[i]), prm); \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                      \
            const CT y0 = LD(y[0]);                                                            \
            PNK_SIMD for (int64_t i = 0; i < n; i++) o[i] = pnK_be_##OP##_##SN(LD(x[i]), y0, prm); \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                o[i * s[0]] = pnK_be_##OP##_##SN(LD(x[i * s[1]]), LD(y[i * s[2]]), prm);       \
        }                                                                                      \
    }
#define PNK_BINARY_GEN(OP, RULE, FE, CE, IE) PNK_TYPES(PNK_BINARY_FN, OP, RULE, FE, CE, IE)
PNK_BINARY_EXPRS(PNK_BINARY_GEN)

/* where: o = c ? x : y moves storage, so one function per element size serves every dtype.
 * The choice is a bit mask (no branch: random conditions would mispredict half the time),
 * with dense loops for a dense condition and dense or scalar values, a strided one else. */
#define PNK_WHERE_SIZES(X) X(1, uint8_t) X(2, uint16_t) X(4, uint32_t) X(8, uint64_t)
#define PNK_WHERE_LOOP(T, XI, YI)                                                              \
    PNK_SIMD for (int64_t i = 0; i < n; i++) {                                                 \
        const T m = (T)((T)0 - (T)(c[i] != 0)); /* c read as bytes: this vectorizes */   \
        o[i] = (T)(((XI) & m) | ((YI) & (T)~m));                                               \
    }
#define PNK_WHERE_FN(SZ, T)                                                                    \
    static void pnK_where_##SZ(int64_t n, char *const *p, const int64_t *s,                    \
                               const pnK_ew_params *prm)                                       \
    {                                                                                          \
        (void)prm;                                                                             \
        const uint8_t *c = (const uint8_t *)p[1];                                              \
        const T *x = (const T *)p[2], *y = (const T *)p[3];                                    \
        T *o = (T *)p[0];                                                                      \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                                \
            PNK_WHERE_LOOP(T, x[i], y[i]);                                                     \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 0) { /* vjps: where(m, g, 0) */ \
            const T y0 = y[0];                                                                 \
            PNK_WHERE_LOOP(T, x[i], y0);                                                       \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 1) {                         \
            const T x0 = x[0];                                                                 \
            PNK_WHERE_LOOP(T, x0, y[i]);                                                       \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 0) {                         \
            const T x0 = x[0], y0 = y[0];                                                      \
            PNK_WHERE_LOOP(T, x0, y0);                                                         \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++)                                                    \
                o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];                         \
        }                                                                                      \
    }
PNK_WHERE_SIZES(PNK_WHERE_FN)

/* The tables: [op][dtype] -> row function, NULL where the op has no such dtype. */
#define PNK_UNARY_ENTRY(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                      \
    [DT] = PNK_FON(PNK_HAS(PNK_COL(CLS, FE, CE, IE)), pnK_u_##OP##_##SN),
#define PNK_UNARY_ROW(OP, RULE, FE, CE, IE)                                                    \
    [PNK_U_##OP] = {PNK_TYPES(PNK_UNARY_ENTRY, OP, RULE, FE, CE, IE)},
static const pnK_row_fn pnK_unary_rows[PNK_U_COUNT][PN_NUM_DTYPES] = {
    PNK_UNARY_EXPRS(PNK_UNARY_ROW)};

#define PNK_BINARY_ENTRY(DT, SN, T, CT, LD, ST, CLS, OP, RULE, FE, CE, IE)                     \
    [DT] = PNK_FON(PNK_HAS(PNK_COL(CLS, FE, CE, IE)), pnK_b_##OP##_##SN),
#define PNK_BINARY_ROW(OP, RULE, FE, CE, IE)                                                   \
    [PNK_B_##OP] = {PNK_TYPES(PNK_BINARY_ENTRY, OP, RULE, FE, CE, IE)},
static const pnK_row_fn pnK_binary_rows[PNK_B_COUNT][PN_NUM_DTYPES] = {
    PNK_BINARY_EXPRS(PNK_BINARY_ROW)};

bool pnK_unary_supported(int op, pn_dtype dtype)
{
    return op >= 0 && op < PNK_U_COUNT && pnC_dtype_valid(dtype) && pnK_unary_rows[op][dtype];
}

bool pnK_binary_supported(int op, pn_dtype dtype)
{
    return op >= 0 && op < PNK_B_COUNT && pnC_dtype_valid(dtype) && pnK_binary_rows[op][dtype];
}

pnK_row_fn pnK_ew_row(int kind, int op, pn_dtype t)
{
    if (kind == 0) return pnK_unary_supported(op, t) ? pnK_unary_rows[op][t] : NULL;
    if (kind == 1) return pnK_binary_supported(op, t) ? pnK_binary_rows[op][t] : NULL;
    switch (pnC_dtype_valid(t) ? pn_dtype_size(t) : 0) {
#define PNK_WHERE_CASE(SZ, T) case SZ: return pnK_where_##SZ;
        PNK_WHERE_SIZES(PNK_WHERE_CASE)
#undef PNK_WHERE_CASE
    }
    return NULL;
}

/* ───────────────────────────── the driver ───────────────────────────── */

/* Runs fn over one row of n elements (strides s), split among threads in contiguous parts
 * (multiples of 64 elements) when it is long enough. */
static void run_split(int64_t n, int nop, char *const *base, const int64_t *s, const size_t *es,
                      pnK_row_fn fn, const pnK_ew_params *prm)
{
    if (n <= PNC_PAR_GRAIN) {
        fn(n, base, s, prm);
        return;
    }
#pragma omp parallel
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t lo = t == 0 ? 0 : (n * t / nt) & ~(int64_t)63;
        int64_t hi = t == nt - 1 ? n : (n * (t + 1) / nt) & ~(int64_t)63;
        if (lo < hi) {
            char *p[PNC_MAX_OPS];
            for (int k = 0; k < nop; k++) p[k] = base[k] + lo * s[k] * (int64_t)es[k];
            fn(hi - lo, p, s, prm);
        }
    }
}

/* Runs fn over rows [r0, r1) of the iterator; base/es: each operand's data and item size. */
static void run_rows(const pnC_nditer *it, char *const *base, const size_t *es, int64_t r0,
                     int64_t r1, pnK_row_fn fn, const pnK_ew_params *prm)
{
    int64_t idx[PNC_MAX_NDIM], off[PNC_MAX_OPS];
    char *p[PNC_MAX_OPS];
    if (r0 >= r1) return;
    pnC_nditer_seek(it, r0, idx, off);
    for (int64_t r = r0; r < r1; r++) {
        for (int k = 0; k < it->nop; k++) p[k] = base[k] + off[k] * (int64_t)es[k];
        fn(it->inner, p, it->inner_stride, prm);
        if (r + 1 < r1) pnC_nditer_next(it, idx, off);
    }
}

/* Runs fn over out[i] = f(in[0][i], ...), inputs broadcast to out's shape. The output gets
 * the buffer of an input that nothing else holds (donate), else a fresh one. */
static int ew_run(int nin, pn_array *const *in, pn_array *out, pnK_row_fn fn,
                  const pnK_ew_params *prm, bool donate)
{
    const int nop = nin + 1;
    const int64_t n = out->size;
    char *base[PNC_MAX_OPS];
    size_t es[PNC_MAX_OPS];
    bool flat = true;
    for (int k = 0; k < nin; k++) { /* before any donation moves a buffer away */
        base[k + 1] = in[k]->size ? (char *)pnC_data(in[k]) : NULL;
        es[k + 1] = pn_dtype_size(in[k]->dtype);
        flat &= in[k]->size == 1 || (in[k]->size == n && pnC_row_contiguous(in[k]));
    }
    bool given = false;
    for (int k = 0; donate && k < nin && !given; k++)
        if (in[k]->size == n && n > 0) given = pnC_donate(out, in[k]);
    if (!given && pnC_alloc_output(out)) return -1;
    if (n == 0) return 0;
    base[0] = pnC_data(out);
    es[0] = pn_dtype_size(out->dtype);

    if (flat) { /* one dense row (scalars broadcast with stride 0) */
        int64_t s[PNC_MAX_OPS];
        s[0] = 1;
        for (int k = 0; k < nin; k++) s[k + 1] = in[k]->size == n ? 1 : 0;
        run_split(n, nop, base, s, es, fn, prm);
        return 0;
    }

    /* general: broadcast strides (0 along broadcast axes) through the nditer, by rows */
    int64_t st[PNC_MAX_OPS][PNC_MAX_NDIM];
    const int64_t *sp[PNC_MAX_OPS];
    const int nd = out->ndim;
    for (int d = 0; d < nd; d++) st[0][d] = out->strides[d];
    for (int k = 0; k < nin; k++) {
        const pn_array *a = in[k];
        int lead = nd - a->ndim;
        for (int d = 0; d < nd; d++) {
            int ad = d - lead;
            st[k + 1][d] = (ad < 0 || a->shape[ad] == 1) ? 0 : a->strides[ad];
        }
    }
    for (int k = 0; k < nop; k++) sp[k] = st[k];
    pnC_nditer it;
    pnC_nditer_init(&it, nd, out->shape, nop, sp);
    if (it.rows == 1) { /* one strided row: split it like a dense one */
        run_split(it.inner, nop, base, it.inner_stride, es, fn, prm);
        return 0;
    }
    if (n <= PNC_PAR_GRAIN) {
        run_rows(&it, base, es, 0, it.rows, fn, prm);
        return 0;
    }
#pragma omp parallel
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        run_rows(&it, base, es, it.rows * t / nt, it.rows * (t + 1) / nt, fn, prm);
    }
    return 0;
}

/* ───────────────────────────── entry points ───────────────────────────── */

static int not_implemented(const pnC_node *node, pn_dtype dtype)
{
    return pn_set_error(PN_ERR_BACKEND, "[%s] Not implemented on the CPU for %s.",
                        node->prim->name, pn_dtype_name(dtype));
}

int pnK_unary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    if (!pnK_unary_supported(prm->op, in[0]->dtype)) return not_implemented(node, in[0]->dtype);
    return ew_run(1, in, out[0], pnK_unary_rows[prm->op][in[0]->dtype], prm, true);
}

int pnK_binary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_ew_params *prm = PNC_PARAMS(node, pnK_ew_params);
    if (!pnK_binary_supported(prm->op, in[0]->dtype)) return not_implemented(node, in[0]->dtype);
    return ew_run(2, in, out[0], pnK_binary_rows[prm->op][in[0]->dtype], prm, true);
}

int pnK_divmod_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_dtype t = in[0]->dtype;
    if (!pnK_binary_supported(PNK_B_FLOOR_DIVIDE, t) || !pnK_binary_supported(PNK_B_REMAINDER, t))
        return not_implemented(node, t);
    /* both outputs read both inputs: no donation */
    const pnK_ew_params prm = {0};
    if (ew_run(2, in, out[0], pnK_binary_rows[PNK_B_FLOOR_DIVIDE][t], &prm, false)) return -1;
    return ew_run(2, in, out[1], pnK_binary_rows[PNK_B_REMAINDER][t], &prm, false);
}

int pnK_where_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pnK_row_fn fn = NULL;
    switch (pn_dtype_size(out[0]->dtype)) {
#define PNK_WHERE_CASE(SZ, T) case SZ: fn = pnK_where_##SZ; break;
        PNK_WHERE_SIZES(PNK_WHERE_CASE)
#undef PNK_WHERE_CASE
    }
    if (!fn || in[0]->dtype != PN_BOOL) return not_implemented(node, out[0]->dtype);
    const pnK_ew_params prm = {0};
    return ew_run(3, in, out[0], fn, &prm, true);
}
