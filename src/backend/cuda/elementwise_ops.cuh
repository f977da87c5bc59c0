/* elementwise_ops.cuh — the GPU elementwise machinery shared by elementwise_unary.cu,
 * elementwise_binary.cu and elementwise_where.cu (one header, three translation units so that
 * nvcc compiles them in parallel). One expression table per arity, keyed by the CPU's op enums
 * and written as the CPU's (backend/cpu/elementwise.c: same semantics, f16/bf16 computed in
 * float), gives a functor per (op, dtype); two generic kernels run any functor: a flat one
 * (dense or scalar operands, 16-byte vector loads and stores) and a strided one over a
 * pnG_layout. */
#ifndef PONTE_BACKEND_CUDA_ELEMENTWISE_OPS_CUH
#define PONTE_BACKEND_CUDA_ELEMENTWISE_OPS_CUH

#include "backend/cuda/common.cuh"
#include "core/erfinv.h"
#include "backend/cuda/elementwise.h"

/* The op enums and params live in the CPU kernels' header, whose core.h is C11 only: skip
 * core.h through its include guard and declare the one core type that header names. */
#define PONTE_CORE_H
typedef struct pnC_node pnC_node;
#include "backend/cpu/elementwise.h"

#include <float.h>
#include <math.h>

/* The tables are instantiated for every dtype of a class, bool and unsigned included:
 * comparisons that are constant for some of them are intended. */
#if defined(__CUDACC__)
#pragma nv_diag_suppress 186 /* pointless comparison of unsigned integer with zero */
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wbool-compare"
#pragma GCC diagnostic ignored "-Wint-in-bool-context"
#pragma GCC diagnostic ignored "-Wbool-operation"
#endif

/* ───────────────────────────── math by type ───────────────────────────── */

/* png_<fn>(x) for float and double picks fnf or fn (as <tgmath.h> does on the CPU). */
#define PNG_MATH1(X)                                                                           \
    X(fabs) X(sqrt) X(exp) X(expm1) X(log) X(log1p) X(log2) X(log10) X(sin) X(cos) X(tan)      \
    X(asin) X(acos) X(atan) X(sinh) X(cosh) X(tanh) X(asinh) X(acosh) X(atanh) X(floor)       \
    X(ceil) X(erf) X(erfc) X(rint)
#define PNG_MATH2(X) X(fmod) X(pow) X(atan2) X(copysign) X(hypot)
#define PNG_DEF_MATH1(fn)                                                                      \
    __device__ __forceinline__ float png_##fn(float x) { return fn##f(x); }                    \
    __device__ __forceinline__ double png_##fn(double x) { return fn(x); }
#define PNG_DEF_MATH2(fn)                                                                      \
    __device__ __forceinline__ float png_##fn(float x, float y) { return fn##f(x, y); }        \
    __device__ __forceinline__ double png_##fn(double x, double y) { return fn(x, y); }
PNG_MATH1(PNG_DEF_MATH1)
PNG_MATH2(PNG_DEF_MATH2)

template <typename T> __device__ __forceinline__ bool png_isfinite(T x)
{
    return !isnan(x) && !isinf(x);
}

/* ───────────────────────────── scalar helpers (as the CPU's) ───────────────────────────── */

/* Whether integer type T is signed (bool is not). */
template <typename T> struct png_signed {
    static const bool value = (T)-1 < (T)0;
};

/* Integer floor division and remainder with Python's signs; x // 0 and x % 0 give 0,
 * MIN // -1 wraps. W: the working type (32 bits for types up to 4 bytes: same results,
 * cheaper division). */
template <typename W> __device__ __forceinline__ W png_sfloordiv(W a, W b)
{
    if (b == 0) return 0;
    if (b == -1) return (W)(0 - (unsigned long long)a);
    W q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}
template <typename W> __device__ __forceinline__ W png_srem(W a, W b)
{
    if (b == 0 || b == -1) return 0;
    W r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}
template <typename T, bool S = png_signed<T>::value, bool WIDE = (sizeof(T) > 4)>
struct png_divtype;
template <typename T> struct png_divtype<T, true, false> {
    typedef int32_t type;
};
template <typename T> struct png_divtype<T, true, true> {
    typedef int64_t type;
};
template <typename T> struct png_divtype<T, false, false> {
    typedef uint32_t type;
};
template <typename T> struct png_divtype<T, false, true> {
    typedef uint64_t type;
};
template <typename T> __device__ __forceinline__ T png_ifloordiv(T a, T b)
{
    typedef typename png_divtype<T>::type W;
    if constexpr (png_signed<T>::value)
        return (T)png_sfloordiv<W>((W)a, (W)b);
    else
        return (T)(b ? (W)a / (W)b : 0);
}
template <typename T> __device__ __forceinline__ T png_irem(T a, T b)
{
    typedef typename png_divtype<T>::type W;
    if constexpr (png_signed<T>::value)
        return (T)png_srem<W>((W)a, (W)b);
    else
        return (T)(b ? (W)a % (W)b : 0);
}

/* Integer arithmetic that wraps like the hardware: computed in uint64_t and truncated. */
#define PNG_WRAP(a, OP, b) ((decltype(a))((uint64_t)(a)OP(uint64_t)(b)))

/* Integer power by squaring (wrapping); negative exponents give 0 except for bases 1, -1. */
__device__ __forceinline__ uint64_t png_upow(uint64_t base, uint64_t e)
{
    uint64_t r = 1;
    while (e) {
        if (e & 1) r *= base;
        e >>= 1;
        base *= base;
    }
    return r;
}
__device__ __forceinline__ int64_t png_spow(int64_t a, int64_t b)
{
    if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
    return (int64_t)png_upow((uint64_t)a, (uint64_t)b);
}
template <typename T> __device__ __forceinline__ T png_ipow(T a, T b)
{
    if constexpr (png_signed<T>::value)
        return (T)png_spow((int64_t)a, (int64_t)b);
    else
        return (T)png_upow((uint64_t)a, (uint64_t)b);
}

/* Shifts by counts outside [0, 64) give 0 (or -1 for a negative signed right shift). */
template <typename T> __device__ __forceinline__ T png_shl(T a, T b)
{
    int64_t s = (int64_t)b;
    return (T)((s < 0 || s > 63) ? 0 : (uint64_t)a << s);
}
template <typename T> __device__ __forceinline__ T png_shr(T a, T b)
{
    int64_t s = (int64_t)b;
    if constexpr (png_signed<T>::value)
        return (T)((s < 0 || s > 63) ? ((int64_t)a < 0 ? -1 : 0) : (int64_t)a >> s);
    else
        return (T)((s < 0 || s > 63) ? 0 : (uint64_t)a >> s);
}

/* Remainder with the sign of the divisor (Python's %). */
template <typename T> __device__ __forceinline__ T png_frem(T a, T b)
{
    T r = png_fmod(a, b);
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}
/* log(exp(a) + exp(b)) without overflow; infinities and NaN handled exactly. */
template <typename T> __device__ __forceinline__ T png_logaddexp(T a, T b)
{
    T hi = a > b ? a : b, lo = a > b ? b : a;
    if (lo != lo) return lo;
    if (hi == (T)INFINITY || lo == -(T)INFINITY) return hi;
    return hi + png_log1p(png_exp(lo - hi));
}
/* erfinv: the one definition every backend shares (core/erfinv.h), so normals match the CPU. */
__device__ __forceinline__ float png_erfinv(float a) { return pn_erfinv_f32(a); }
__device__ __forceinline__ double png_erfinv(double y) { return pn_erfinv_f64(y); }

/* |a - b| <= atol + rtol * |b| (p0 = rtol, p1 = atol, flag = equal_nan), with equal
 * infinities close and other infinities not. */
__device__ __forceinline__ bool png_isclose(double a, double b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (a != a || b != b) return prm->flag && a != a && b != b;
    if (isinf(a) || isinf(b)) return false;
    return fabs(a - b) <= prm->p1 + prm->p0 * fabs(b);
}

/* ───────────────────────────── complex64 ───────────────────────────── */

/* Arithmetic as C's float _Complex (Annex G: infinities survive a product or quotient whose
 * naive formula gives NaN); the elementary functions compute in double and round, which keeps
 * float accuracy without the scaling tricks of a float-only version. */
typedef struct png_z {
    double re, im;
} png_z;
__device__ __forceinline__ png_z png_zof(png_c64 a) { return png_z{a.re, a.im}; }
__device__ __forceinline__ png_c64 png_cof(png_z a) { return png_c64{(float)a.re, (float)a.im}; }

static __device__ __forceinline__ png_c64 operator+(png_c64 a, png_c64 b)
{
    return png_c64{a.re + b.re, a.im + b.im};
}
static __device__ __forceinline__ png_c64 operator-(png_c64 a, png_c64 b)
{
    return png_c64{a.re - b.re, a.im - b.im};
}
static __device__ __forceinline__ png_c64 operator-(png_c64 a) { return png_c64{-a.re, -a.im}; }
static __device__ __forceinline__ bool operator==(png_c64 a, png_c64 b)
{
    return a.re == b.re && a.im == b.im;
}
static __device__ __forceinline__ bool operator!=(png_c64 a, png_c64 b) { return !(a == b); }

/* The floating add, subtract and multiply ops, rounded on their own: the _rn intrinsics are
 * never contracted into a multiply-add with a neighbour (PTX treats an explicit rounding mode
 * conservatively), so a chain fused into one kernel (fused_ops.cuh, NVRTC's generated
 * kernels) rounds each op as the unfused kernels do, bit for bit. */
static __device__ __forceinline__ float png_rn_add(float a, float b) { return __fadd_rn(a, b); }
static __device__ __forceinline__ double png_rn_add(double a, double b) { return __dadd_rn(a, b); }
static __device__ __forceinline__ float png_rn_sub(float a, float b) { return __fsub_rn(a, b); }
static __device__ __forceinline__ double png_rn_sub(double a, double b) { return __dsub_rn(a, b); }
static __device__ __forceinline__ float png_rn_mul(float a, float b) { return __fmul_rn(a, b); }
static __device__ __forceinline__ double png_rn_mul(double a, double b) { return __dmul_rn(a, b); }

static __device__ __forceinline__ png_c64 operator*(png_c64 a, png_c64 b) { return png_cmul(a, b); }
__device__ __forceinline__ png_z png_zmul(png_z a, png_z b)
{
    png_z r;
    png_cmul_g<double>(a.re, a.im, b.re, b.im, &r.re, &r.im);
    return r;
}
/* Quotient in double (no overflow for float operands), Annex G's infinities and zeros. */
__device__ __forceinline__ png_z png_zdiv(png_z n, png_z m)
{
    double a = n.re, b = n.im, c = m.re, d = m.im;
    double den = c * c + d * d;
    double x = (a * c + b * d) / den, y = (b * c - a * d) / den;
    if (isnan(x) && isnan(y)) {
        if (den == 0 && (!isnan(a) || !isnan(b))) {
            x = copysign((double)INFINITY, c) * a;
            y = copysign((double)INFINITY, c) * b;
        } else if ((isinf(a) || isinf(b)) && png_isfinite(c) && png_isfinite(d)) {
            a = copysign(isinf(a) ? 1.0 : 0.0, a);
            b = copysign(isinf(b) ? 1.0 : 0.0, b);
            x = INFINITY * (a * c + b * d);
            y = INFINITY * (b * c - a * d);
        } else if ((isinf(c) || isinf(d)) && png_isfinite(a) && png_isfinite(b)) {
            c = copysign(isinf(c) ? 1.0 : 0.0, c);
            d = copysign(isinf(d) ? 1.0 : 0.0, d);
            x = 0.0 * (a * c + b * d);
            y = 0.0 * (b * c - a * d);
        }
    }
    return png_z{x, y};
}
static __device__ __forceinline__ png_c64 operator/(png_c64 a, png_c64 b)
{
    return png_cof(png_zdiv(png_zof(a), png_zof(b)));
}

__device__ __forceinline__ float png_cabs(png_c64 v) { return (float)hypot(v.re, v.im); }
__device__ __forceinline__ bool png_cisnan(png_c64 v) { return v.re != v.re || v.im != v.im; }
__device__ __forceinline__ bool png_cisinf(png_c64 v) { return isinf(v.re) || isinf(v.im); }

__device__ __forceinline__ png_z png_zexp(png_z z)
{
    double x = z.re, y = z.im;
    if (y == 0) return png_z{exp(x), y};
    if (!png_isfinite(y)) {
        if (isinf(x)) return x < 0 ? png_z{0.0, 0.0} : png_z{x, (double)NAN};
        return png_z{(double)NAN, (double)NAN};
    }
    double e = exp(x);
    return png_z{e * cos(y), e * sin(y)};
}
/* log z = log|z| + i arg z; where |z| is near 1 (the parts are floats, so their squares and
 * (big - 1)(big + 1) are exact in double), log|z| = log1p((big - 1)(big + 1) + small^2) / 2
 * keeps the digits log(hypot) loses to cancellation (as glibc's clog: |a|^-inf with |a| just
 * above 1 is then 0, not NaN). */
__device__ __forceinline__ png_z png_zlog(png_z z)
{
    double ax = fabs(z.re), ay = fabs(z.im); /* a NaN part stays NaN (fmax would drop it) */
    double big = ax > ay ? ax : ay, small = ax > ay ? ay : ax;
    double re = big > 0.5 && big < 2 ? 0.5 * log1p(fma(big - 1, big + 1, small * small))
                                     : log(hypot(z.re, z.im));
    return png_z{re, atan2(z.im, z.re)};
}
/* Principal square root (Kahan's formulation: no cancellation). */
__device__ __forceinline__ png_z png_zsqrt(png_z z)
{
    double x = z.re, y = z.im;
    if (x == 0 && y == 0) return png_z{0.0, y};
    if (isinf(y)) return png_z{(double)INFINITY, y};
    if (isnan(x)) return png_z{x, (double)NAN};
    if (isinf(x)) {
        if (x > 0) return png_z{x, isnan(y) ? y : copysign(0.0, y)};
        return png_z{isnan(y) ? y : 0.0, copysign((double)INFINITY, y)};
    }
    double t = sqrt((fabs(x) + hypot(x, y)) * 0.5);
    if (x >= 0) return png_z{t, y / (2 * t)};
    return png_z{fabs(y) / (2 * t), copysign(t, y)};
}
/* sinh and cosh; an infinite or NaN imaginary part as C's Annex G (G.6.2.5, G.6.2.4), as
 * glibc's csinh / ccosh on the CPU (sin and cos follow through the rotations below). */
__device__ __forceinline__ png_z png_zsinh(png_z z)
{
    if (z.im == 0) return png_z{sinh(z.re), z.im};
    if (!png_isfinite(z.im))
        return isinf(z.re) ? png_z{(double)INFINITY, (double)NAN} /* glibc's sign */
               : z.re == 0 ? png_z{z.re, (double)NAN}
                           : png_z{(double)NAN, (double)NAN};
    return png_z{sinh(z.re) * cos(z.im), cosh(z.re) * sin(z.im)};
}
__device__ __forceinline__ png_z png_zcosh(png_z z)
{
    if (z.im == 0) return png_z{cosh(z.re), signbit(z.re) != signbit(z.im) ? -0.0 : 0.0};
    if (!png_isfinite(z.im))
        return isinf(z.re) ? png_z{(double)INFINITY, (double)NAN}
                           : png_z{(double)NAN, z.re == 0 ? 0.0 : (double)NAN};
    return png_z{cosh(z.re) * cos(z.im), sinh(z.re) * sin(z.im)};
}
/* tanh by Kahan's formula; saturates for large |re| without overflow. Infinite and NaN parts
 * as C's Annex G (G.6.2.6), as glibc's ctanh on the CPU. */
__device__ __forceinline__ png_z png_ztanh(png_z z)
{
    double x = z.re, y = z.im;
    if (y == 0) return png_z{tanh(x), y};
    if (isinf(x) && !png_isfinite(y)) return png_z{copysign(1.0, x), copysign(0.0, y)};
    if (!png_isfinite(y)) return png_z{x == 0 ? x : (double)NAN, (double)NAN};
    if (fabs(x) > 22) {
        double e = exp(-2 * fabs(x));
        return png_z{copysign(1.0, x), 4 * sin(y) * cos(y) * e};
    }
    double t = tan(y), b = 1 + t * t, s = sinh(x), rho = sqrt(1 + s * s), d = 1 + b * s * s;
    return png_z{b * rho * s / d, t / d};
}
/* f(i z) rotated back: the circular functions from the hyperbolic ones. */
__device__ __forceinline__ png_z png_zmul_i(png_z z) { return png_z{-z.im, z.re}; }     /* i z */
__device__ __forceinline__ png_z png_zmul_negi(png_z z) { return png_z{z.im, -z.re}; } /* -i z */
/* asinh, acosh and atanh of a z with an infinite or NaN part: C's Annex G (G.6.2.2, G.6.2.1,
 * G.6.2.3), as glibc's casinh / cacosh / catanh on the CPU (asin, acos, atan follow through
 * the rotations below). */
__device__ __forceinline__ png_z png_zasinh_special(double x, double y)
{
    const double pi_2 = 1.5707963267948966, pi_4 = 0.7853981633974483;
    if (isinf(x) || isinf(y)) {
        double im = isnan(x) || isnan(y) ? (double)NAN : isinf(x) ? (isinf(y) ? pi_4 : 0.0) : pi_2;
        return png_z{copysign((double)INFINITY, x), copysign(im, y)};
    }
    return png_z{(double)NAN, y == 0 ? y : (double)NAN};
}
__device__ __forceinline__ png_z png_zacosh_special(double x, double y)
{
    const double pi = 3.141592653589793;
    if (isinf(x) || isinf(y)) {
        if (isnan(x) || isnan(y)) return png_z{(double)INFINITY, (double)NAN};
        double im = isinf(x) ? (isinf(y) ? (x > 0 ? pi / 4 : 3 * pi / 4) : (x > 0 ? 0.0 : pi)) : pi / 2;
        return png_z{(double)INFINITY, copysign(im, y)};
    }
    return png_z{(double)NAN, x == 0 ? 1.5707963267948966 : (double)NAN};
}
__device__ __forceinline__ png_z png_zatanh_special(double x, double y)
{
    if (isinf(x) || isinf(y)) return png_z{copysign(0.0, x), isnan(y) ? y : copysign(1.5707963267948966, y)};
    return png_z{x == 0 ? x : (double)NAN, (double)NAN};
}
__device__ __forceinline__ png_z png_zasinh(png_z z)
{
    if (!png_isfinite(z.re) || !png_isfinite(z.im)) return png_zasinh_special(z.re, z.im);
    const bool neg = signbit(z.re); /* odd: compute in the right half-plane (no cancellation) */
    if (neg) z = png_z{-z.re, -z.im};
    png_z r;
    if (hypot(z.re, z.im) < 1e-4) { /* z - z^3/6: log(1 + z) would lose z's digits */
        png_z z3 = png_zmul(png_zmul(z, z), z);
        r = png_z{z.re - z3.re / 6, z.im - z3.im / 6};
    } else {
        png_z w = png_zmul(z, z);
        w.re += 1;
        png_z s = png_zsqrt(w);
        r = png_zlog(png_z{z.re + s.re, z.im + s.im});
    }
    return neg ? png_z{-r.re, -r.im} : r;
}
__device__ __forceinline__ png_z png_zacosh(png_z z)
{
    if (!png_isfinite(z.re) || !png_isfinite(z.im)) return png_zacosh_special(z.re, z.im);
    png_z p = png_zsqrt(png_z{z.re + 1, z.im}), m = png_zsqrt(png_z{z.re - 1, z.im});
    png_z q = png_zmul(p, m);
    return png_zlog(png_z{z.re + q.re, z.im + q.im});
}
/* atanh with the real part through log1p (accurate near 0 and near +-1). */
__device__ __forceinline__ png_z png_zatanh(png_z z)
{
    double x = z.re, y = z.im, ax = fabs(x);
    if (!png_isfinite(x) || !png_isfinite(y)) return png_zatanh_special(x, y);
    double re = 0.25 * log1p(4 * ax / ((1 - ax) * (1 - ax) + y * y));
    double im = 0.5 * atan2(2 * y, (1 - x) * (1 + x) - y * y);
    return png_z{copysign(re, x), im};
}

/* sin z = -i sinh(i z), except that an infinite imaginary part with a non-finite real one
 * gives NaN + i inf: glibc's csin's choice of the sign Annex G leaves open (G.6.2.5). */
__device__ __forceinline__ png_z png_zsin(png_z z)
{
    if (isinf(z.im) && !png_isfinite(z.re)) return png_z{(double)NAN, (double)INFINITY};
    return png_zmul_negi(png_zsinh(png_zmul_i(z)));
}

/* The complex64 functions of the op table (CPU: csqrtf, cexpf, ... of <complex.h>). */
#define PNG_CFUNS(X)                                                                           \
    X(sqrt, png_zsqrt(z))                                                                      \
    X(exp, png_zexp(z))                                                                        \
    X(log, png_zlog(z))                                                                        \
    X(sinh, png_zsinh(z))                                                                      \
    X(cosh, png_zcosh(z))                                                                      \
    X(tanh, png_ztanh(z))                                                                      \
    X(asinh, png_zasinh(z))                                                                    \
    X(acosh, png_zacosh(z))                                                                    \
    X(atanh, png_zatanh(z))                                                                    \
    X(sin, png_zsin(z))                                                                        \
    X(cos, png_zcosh(png_zmul_i(z)))                                                           \
    X(tan, png_zmul_negi(png_ztanh(png_zmul_i(z))))                                            \
    X(asin, png_zmul_negi(png_zasinh(png_zmul_i(z))))                                          \
    X(acos, png_zacos_(z))                                                                     \
    X(atan, png_zmul_negi(png_zatanh(png_zmul_i(z))))
__device__ __forceinline__ png_z png_zacos_(png_z z)
{
    png_z s = png_zmul_negi(png_zasinh(png_zmul_i(z))); /* asin */
    return png_z{1.5707963267948966 - s.re, -s.im};
}
#define PNG_DEF_CFUN(fn, EXPR)                                                                 \
    __device__ __forceinline__ png_c64 png_c##fn(png_c64 v)                                    \
    {                                                                                          \
        png_z z = png_zof(v);                                                                  \
        return png_cof(EXPR);                                                                  \
    }
PNG_CFUNS(PNG_DEF_CFUN)

/* log(v) / k, the base-k logarithm for k = ln 2, ln 10 (the CPU: clogf(v) / k in float). */
__device__ __forceinline__ png_c64 png_clogk(png_c64 v, float k)
{
    png_c64 l = png_clog(v);
    return png_c64{l.re / k, l.im / k};
}

/* a ** b = exp(b * log(a)) in double, rounded once (the CPU's pnK_cpow: glibc's cpow). */
__device__ __forceinline__ png_c64 png_cpow(png_c64 a, png_c64 b)
{
    return png_cof(png_zexp(png_zmul(png_zof(b), png_zlog(png_zof(a)))));
}
__device__ __forceinline__ bool png_cisclose(png_c64 a, png_c64 b, const pnK_ew_params *prm)
{
    if (a == b) return true;
    if (png_cisnan(a) || png_cisnan(b)) return prm->flag && png_cisnan(a) && png_cisnan(b);
    if (png_cisinf(a) || png_cisinf(b)) return false;
    return hypot((double)a.re - b.re, (double)a.im - b.im) <=
           prm->p1 + prm->p0 * hypot((double)b.re, (double)b.im);
}

/* ───────────────────────────── the op tables ───────────────────────────── */

/* A column is E(expression) or NA (no such op for that class of dtypes). */
#define PNG_CAT_(a, b) a##b
#define PNG_CAT(a, b) PNG_CAT_(a, b)
#define PNG_HAS_NA false
#define PNG_HAS_E(...) true
#define PNG_HAS(col) PNG_CAT(PNG_HAS_, col)
#define PNG_EXPR_NA 0
#define PNG_EXPR_E(...) (__VA_ARGS__)
#define PNG_EXPR(col) PNG_CAT(PNG_EXPR_, col)

/* Unary: X(OP, output rule, float, complex64, integer/bool), OP a pnK_unary_op without its
 * prefix. v is the input in its compute type (float for f16/bf16), prm the node's params;
 * every expression is the CPU table's. */
#define PNG_UNARY_EXPRS(X)                                                                     \
    X(ABS, OREAL, E(png_fabs(v)), E(png_cabs(v)), E(v > 0 ? v : PNG_WRAP(v, *, -1)))           \
    X(NEGATIVE, OSAME, E(-v), E(-v), E(PNG_WRAP(v, *, -1)))                                    \
    X(SIGN, OSAME, E(v > 0 ? 1 : v < 0 ? -1 : v),                                              \
      E(v == png_c64{0, 0} ? png_c64{0, 0} : png_c64{v.re / png_cabs(v), v.im / png_cabs(v)}), \
      E(v > 0 ? 1 : v < 0 ? -1 : 0))                                                           \
    X(SQRT, OSAME, E(png_sqrt(v)), E(png_csqrt(v)), NA)                                        \
    X(RSQRT, OSAME, E(1 / png_sqrt(v)), E(png_c64{1, 0} / png_csqrt(v)), NA)                   \
    X(SQUARE, OSAME, E(png_rn_mul(v, v)), E(v * v), E(PNG_WRAP(v, *, v)))                      \
    X(EXP, OSAME, E(png_exp(v)), E(png_cexp(v)), NA)                                           \
    X(EXPM1, OSAME, E(png_expm1(v)), NA, NA)                                                   \
    X(LOG, OSAME, E(png_log(v)), E(png_clog(v)), NA)                                           \
    X(LOG1P, OSAME, E(png_log1p(v)), E(png_clog1p(v)), NA)                                    \
    X(LOG2, OSAME, E(png_log2(v)), E(png_clogk(v, 0.693147180559945309f)), NA)                                 \
    X(LOG10, OSAME, E(png_log10(v)), E(png_clogk(v, 2.30258509299404568f)), NA)                                 \
    X(SIN, OSAME, E(png_sin(v)), E(png_csin(v)), NA)                                           \
    X(COS, OSAME, E(png_cos(v)), E(png_ccos(v)), NA)                                           \
    X(TAN, OSAME, E(png_tan(v)), E(png_ctan(v)), NA)                                           \
    X(ARCSIN, OSAME, E(png_asin(v)), E(png_casin(v)), NA)                                      \
    X(ARCCOS, OSAME, E(png_acos(v)), E(png_cacos(v)), NA)                                      \
    X(ARCTAN, OSAME, E(png_atan(v)), E(png_catan(v)), NA)                                      \
    X(SINH, OSAME, E(png_sinh(v)), E(png_csinh(v)), NA)                                        \
    X(COSH, OSAME, E(png_cosh(v)), E(png_ccosh(v)), NA)                                        \
    X(TANH, OSAME, E(png_tanh(v)), E(png_ctanh(v)), NA)                                        \
    X(ARCSINH, OSAME, E(png_asinh(v)), E(png_casinh(v)), NA)                                   \
    X(ARCCOSH, OSAME, E(png_acosh(v)), E(png_cacosh(v)), NA)                                   \
    X(ARCTANH, OSAME, E(png_atanh(v)), E(png_catanh(v)), NA)                                   \
    X(FLOOR, OSAME, E(png_floor(v)), NA, E(v))                                                 \
    X(CEIL, OSAME, E(png_ceil(v)), NA, E(v))                                                   \
    X(SIGMOID, OSAME, E(1 / (1 + png_exp(-v))), NA, NA)                                        \
    X(ERF, OSAME, E(png_erf(v)), NA, NA)                                                       \
    X(ERFINV, OSAME, E(png_erfinv(v)), NA, NA)                                                 \
    X(LOGICAL_NOT, OBOOL, E(!v), E(v == png_c64{0, 0}), E(!v))                                 \
    X(BITWISE_INVERT, OSAME, NA, NA, E(v ^ (decltype(v))-1))                                   \
    X(ISNAN, OBOOL, E(isnan(v)), E(png_cisnan(v)), E(0))                                       \
    X(ISINF, OBOOL, E(isinf(v)), E(png_cisinf(v)), E(0))                                       \
    X(ISFINITE, OBOOL, E(png_isfinite(v)), E(png_isfinite(v.re) && png_isfinite(v.im)), E(1))  \
    X(ISPOSINF, OBOOL, E(v == INFINITY), E(v.re == INFINITY && v.im == 0), E(0))               \
    X(ISNEGINF, OBOOL, E(v == -INFINITY), E(v.re == -INFINITY && v.im == 0), E(0))             \
    X(CONJUGATE, OSAME, E(v), E(png_c64{v.re, -v.im}), E(v))                                   \
    X(REAL, OREAL, E(v), E(v.re), E(v))                                                        \
    X(IMAG, OREAL, E(0), E(v.im), E(0))                                                        \
    X(ROUND, OSAME,                                                                            \
      E(prm->p0 == 1 ? png_rint(v) : (decltype(v))(rint((double)v * prm->p0) / prm->p0)), NA,  \
      E(prm->p0 >= 1 ? v : (decltype(v))(int64_t)(rint((double)v * prm->p0) / prm->p0)))      \
    X(NAN_TO_NUM, OSAME,                                                                       \
      E(v != v ? prm->p0 : v == INFINITY ? prm->p1 : v == -INFINITY ? prm->p2 : (double)v), NA, \
      E(v))

/* Binary: X(OP, output rule, float, complex64, integer/bool); a, b in the compute type. */
#define PNG_BINARY_EXPRS(X)                                                                    \
    X(ADD, OSAME, E(png_rn_add(a, b)), E(a + b), E(PNG_WRAP(a, +, b)))                         \
    X(SUBTRACT, OSAME, E(png_rn_sub(a, b)), E(a - b), E(PNG_WRAP(a, -, b)))                    \
    X(MULTIPLY, OSAME, E(png_rn_mul(a, b)), E(a * b), E(PNG_WRAP(a, *, b)))                    \
    X(DIVIDE, OSAME, E(a / b), E(a / b), NA)                                                   \
    X(FLOOR_DIVIDE, OSAME, E(png_floor(a / b)), NA, E(png_ifloordiv(a, b)))                    \
    X(REMAINDER, OSAME, E(png_frem(a, b)), NA, E(png_irem(a, b)))                              \
    X(POWER, OSAME, E(png_pow(a, b)), E(png_cpow(a, b)), E(png_ipow(a, b)))                    \
    X(MAXIMUM, OSAME, E(a > b || a != a ? a : b), NA, E(a > b ? a : b))                        \
    X(MINIMUM, OSAME, E(a < b || a != a ? a : b), NA, E(a < b ? a : b))                        \
    X(ARCTAN2, OSAME, E(png_atan2(a, b)), NA, NA)                                              \
    X(LOGADDEXP, OSAME, E(png_logaddexp(a, b)), E(png_clae(a, b)), NA)                         \
    X(EQUAL, OBOOL, E(a == b || (prm->flag && a != a && b != b)),                              \
      E(a == b || (prm->flag && png_cisnan(a) && png_cisnan(b))), E(a == b))                   \
    X(NOT_EQUAL, OBOOL, E(a != b), E(a != b), E(a != b))                                       \
    X(LESS, OBOOL, E(a < b), NA, E(a < b))                                                     \
    X(LESS_EQUAL, OBOOL, E(a <= b), NA, E(a <= b))                                             \
    X(GREATER, OBOOL, E(a > b), NA, E(a > b))                                                  \
    X(GREATER_EQUAL, OBOOL, E(a >= b), NA, E(a >= b))                                          \
    X(LOGICAL_AND, OBOOL, E(a != 0 && b != 0),                                                 \
      E(a != png_c64{0, 0} && b != png_c64{0, 0}), E(a != 0 && b != 0))                        \
    X(LOGICAL_OR, OBOOL, E(a != 0 || b != 0),                                                  \
      E(a != png_c64{0, 0} || b != png_c64{0, 0}), E(a != 0 || b != 0))                        \
    X(BITWISE_AND, OSAME, NA, NA, E(a & b))                                                    \
    X(BITWISE_OR, OSAME, NA, NA, E(a | b))                                                     \
    X(BITWISE_XOR, OSAME, NA, NA, E(a ^ b))                                                    \
    X(LEFT_SHIFT, OSAME, NA, NA, E(png_shl(a, b)))                                             \
    X(RIGHT_SHIFT, OSAME, NA, NA, E(png_shr(a, b)))                                            \
    X(ISCLOSE, OBOOL, E(png_isclose((double)a, (double)b, prm)), E(png_cisclose(a, b, prm)),   \
      E(png_isclose((double)a, (double)b, prm)))

/* ───────────────────────────── functors ───────────────────────────── */

/* Classes of dtypes, as the CPU's: KFLT (halves, f32, f64), KCPX (complex64), KINT (bool and
 * the integers). */
enum { PNG_KINT, PNG_KFLT, PNG_KCPX };
template <typename T> struct png_class {
    static const int value = PNG_KINT;
};
#define PNG_CLASS(T, K)                                                                        \
    template <> struct png_class<T> {                                                          \
        static const int value = K;                                                            \
    };
PNG_CLASS(pn_float16, PNG_KFLT)
PNG_CLASS(pn_bfloat16, PNG_KFLT)
PNG_CLASS(float, PNG_KFLT)
PNG_CLASS(double, PNG_KFLT)
PNG_CLASS(png_c64, PNG_KCPX)

/* Output rules: OSAME (the input's type), OBOOL, OREAL (complex64 gives float32). */
enum { PNG_OSAME, PNG_OBOOL, PNG_OREAL };
template <int R, typename T> struct png_out {
    typedef T type;
};
template <typename T> struct png_out<PNG_OBOOL, T> {
    typedef bool type;
};
template <> struct png_out<PNG_OREAL, png_c64> {
    typedef float type;
};

/* Whether a table row has a column for T's class. */
template <typename T> constexpr bool png_has(bool f, bool c, bool i)
{
    return png_class<T>::value == PNG_KFLT ? f : png_class<T>::value == PNG_KCPX ? c : i;
}

/* png_unary_fn<op, T>: out_t operator()(compute value) for inputs of storage type T; ok says
 * whether (op, T) exists. png_binary_fn likewise with two operands. */
template <int OP, typename T> struct png_unary_fn;
template <int OP, typename T> struct png_binary_fn;

#define PNG_UNARY_FN(OP, RULE, FE, CE, IE)                                                     \
    template <typename T> struct png_unary_fn<PNK_U_##OP, T> {                                 \
        typedef T in_t;                                                                        \
        typedef typename png_out<PNG_##RULE, T>::type out_t;                                   \
        typedef typename png_compute<T>::type CT;                                              \
        static constexpr bool ok = png_has<T>(PNG_HAS(FE), PNG_HAS(CE), PNG_HAS(IE));          \
        pnK_ew_params prm_;                                                                    \
        __device__ __forceinline__ auto operator()(CT v) const                                 \
        {                                                                                      \
            const pnK_ew_params *prm = &prm_;                                                  \
            (void)prm;                                                                         \
            if constexpr (png_class<T>::value == PNG_KFLT)                                     \
                return PNG_EXPR(FE);                                                           \
            else if constexpr (png_class<T>::value == PNG_KCPX)                                \
                return PNG_EXPR(CE);                                                           \
            else                                                                               \
                return PNG_EXPR(IE);                                                           \
        }                                                                                      \
    };
PNG_UNARY_EXPRS(PNG_UNARY_FN)

#define PNG_BINARY_FN(OP, RULE, FE, CE, IE)                                                    \
    template <typename T> struct png_binary_fn<PNK_B_##OP, T> {                                \
        typedef T in_t;                                                                        \
        typedef typename png_out<PNG_##RULE, T>::type out_t;                                   \
        typedef typename png_compute<T>::type CT;                                              \
        static constexpr bool ok = png_has<T>(PNG_HAS(FE), PNG_HAS(CE), PNG_HAS(IE));          \
        pnK_ew_params prm_;                                                                    \
        __device__ __forceinline__ auto operator()(CT a, CT b) const                           \
        {                                                                                      \
            const pnK_ew_params *prm = &prm_;                                                  \
            (void)prm;                                                                         \
            if constexpr (png_class<T>::value == PNG_KFLT)                                     \
                return PNG_EXPR(FE);                                                           \
            else if constexpr (png_class<T>::value == PNG_KCPX)                                \
                return PNG_EXPR(CE);                                                           \
            else                                                                               \
                return PNG_EXPR(IE);                                                           \
        }                                                                                      \
    };
PNG_BINARY_EXPRS(PNG_BINARY_FN)

/* Every op of the CPU's lists has a row here (a missing one fails to compile). */
#define PNG_CHECK_U(E, name, prim, rule, cpx) sizeof(png_unary_fn<PNK_U_##E, float>),
#define PNG_CHECK_B(E, name, prim, rule, cpx) sizeof(png_binary_fn<PNK_B_##E, float>),
static const size_t png_unary_rows_[] = {PNK_UNARY_OPS(PNG_CHECK_U) PNK_UNARY_EXTRA(PNG_CHECK_U)};
static const size_t png_binary_rows_[] = {
    PNK_BINARY_OPS(PNG_CHECK_B) PNK_BINARY_EXTRA(PNG_CHECK_B)};
static_assert(sizeof png_unary_rows_ / sizeof(size_t) == PNK_U_COUNT, "unary table");
static_assert(sizeof png_binary_rows_ / sizeof(size_t) == PNK_B_COUNT, "binary table");

/* where: c ? x : y moves storage, so one functor per element size serves every dtype. */
template <typename U> struct png_where_fn {
    __device__ __forceinline__ U operator()(uint8_t c, U x, U y) const { return c ? x : y; }
};

/* ───────────────────────────── kernels ───────────────────────────── */

/* One input of a kernel: flat walks read p[i * s] (s = 1 dense, 0 broadcast scalar); strided
 * walks read p at the layout offset of its operand. */
template <typename T> struct png_arg {
    const T *p;
    int64_t s;
};
#ifdef PONTE_GPU_SIM
/* The simulated launch checks the operand's pointer (cuda_sim.h). */
template <typename T> static inline void pnsim_param_pointers(const png_arg<T> &a, pnsim_param_visit &v)
{
    v.ptr(a.p);
}
#endif

template <int N, typename T>
__device__ __forceinline__ png_vec<T, N> png_vload(const png_arg<T> &a, int64_t vi)
{
    png_vec<T, N> r;
    if (a.s == 0) {
        const T x = a.p[0];
        for (int j = 0; j < N; j++) r.v[j] = x;
    } else {
        r = *(const png_vec<T, N> *)(a.p + vi * N);
    }
    return r;
}

template <int N, typename F, typename OT, typename... V>
__device__ __forceinline__ void png_apply(const F &f, png_vec<OT, N> &o, const V &...x)
{
    for (int j = 0; j < N; j++) png_store(&o.v[j], f(png_load(&x.v[j])...));
}

/* out[i] = f(in...[i]) for i < n, every operand dense or scalar: N elements per step with
 * vector accesses (every dense pointer aligned to N elements), then the tail one by one. */
template <typename F, int N, typename OT, typename... IT>
__global__ void png_ew_flat(F f, int64_t n, OT *out, png_arg<IT>... in)
{
    const int64_t nv = n / N;
    for (int64_t vi = png_thread_index(); vi < nv; vi += png_grid_stride()) {
        png_vec<OT, N> o;
        png_apply<N>(f, o, png_vload<N>(in, vi)...);
        *(png_vec<OT, N> *)(out + vi * N) = o;
    }
    for (int64_t i = nv * N + png_thread_index(); i < n; i += png_grid_stride())
        png_store(out + i, f(png_load(in.p + i * in.s)...));
}

/* Offsets of every operand of L for the row-major index i (one decomposition for all of
 * them; 32-bit division when the walk is small enough). Loops over operands have constant
 * bounds so that off stays in registers. */
__device__ __forceinline__ void png_offsets(const pnG_layout &L, int64_t i, int64_t *off)
{
    for (int k = 0; k < PNG_MAX_OPS; k++) off[k] = 0;
    if (L.size <= (int64_t)UINT32_MAX) {
        uint32_t r = (uint32_t)i;
        for (int d = L.ndim - 1; d > 0; d--) {
            uint32_t ext = (uint32_t)L.shape[d], q = r / ext, c = r - q * ext;
            for (int k = 0; k < PNG_MAX_OPS; k++)
                if (k < L.nop) off[k] += (int64_t)c * L.strides[k][d];
            r = q;
        }
        i = r;
    } else {
        for (int d = L.ndim - 1; d > 0; d--) {
            int64_t ext = L.shape[d], q = i / ext, c = i - q * ext;
            for (int k = 0; k < PNG_MAX_OPS; k++)
                if (k < L.nop) off[k] += c * L.strides[k][d];
            i = q;
        }
    }
    if (L.ndim > 0) /* the outermost index needs no division */
        for (int k = 0; k < PNG_MAX_OPS; k++)
            if (k < L.nop) off[k] += i * L.strides[k][0];
}

/* Compile-time operand numbers for a pack of inputs: png_seq<0, 1, ..., n-1>. */
template <int... K> struct png_seq {};
template <int N, int... K> struct png_mkseq : png_mkseq<N - 1, N - 1, K...> {};
template <int... K> struct png_mkseq<0, K...> {
    typedef png_seq<K...> type;
};

template <typename F, typename OT, int... K, typename... IT>
__device__ __forceinline__ void png_strided_one(const F &f, OT *out, const int64_t *off,
                                                png_seq<K...>, const png_arg<IT> &...in)
{
    png_store(out + off[0], f(png_load(in.p + off[K + 1])...));
}

/* out = f(in...) over any strides and broadcasts (operand 0 of L is the output, input j is
 * operand j + 1). */
template <typename F, typename OT, typename... IT>
__global__ void png_ew_strided(F f, pnG_layout L, OT *out, png_arg<IT>... in)
{
    for (int64_t i = png_thread_index(); i < L.size; i += png_grid_stride()) {
        int64_t off[PNG_MAX_OPS];
        png_offsets(L, i, off);
        png_strided_one(f, out, off, typename png_mkseq<sizeof...(IT)>::type(), in...);
    }
}

/* ───────────────────────────── launch ───────────────────────────── */

template <typename... T> struct png_maxsize;
template <> struct png_maxsize<> {
    static const int value = 1;
};
template <typename T, typename... R> struct png_maxsize<T, R...> {
    static const int value =
        (int)sizeof(T) > png_maxsize<R...>::value ? (int)sizeof(T) : png_maxsize<R...>::value;
};

static inline bool png_aligned(const void *p, int bytes) { return (uintptr_t)p % bytes == 0; }

template <typename T> static png_arg<T> png_mkarg(const pnG_ew_args *a, int k)
{
    return png_arg<T>{(const T *)a->in[k], a->flat && a->scalar[k] ? 0 : 1};
}

/* Runs f over the operands of a: the vectorized flat kernel when every dense pointer is
 * aligned, else the strided one (a misaligned flat walk as a 1-d layout). */
template <typename OT, typename F, typename... IT>
static int png_ew_run(const F &f, const pnG_ew_args *a, const char *what, png_arg<IT>... in)
{
    cudaStream_t st = png_stream(a->stream);
    if (!st) return -1;
    OT *out = (OT *)a->out;
    const int threads = 256;
    constexpr int N = 16 / png_maxsize<OT, IT...>::value;
    if (a->n == 0) return 0;
    if (a->flat && png_aligned(out, N * (int)sizeof(OT)) &&
        ((in.s == 0 || png_aligned(in.p, N * (int)sizeof(IT))) && ...)) {
        auto k = png_ew_flat<F, N, OT, IT...>;
        int64_t n = a->n;
        PNG_LAUNCH(k, png_blocks_for((n + N - 1) / N, threads), threads, 0, st, f, n, out, in...);
    } else {
        pnG_layout L;
        if (a->flat) {
            L.ndim = 1;
            L.nop = 1 + (int)sizeof...(IT);
            L.size = L.shape[0] = a->n;
            L.strides[0][0] = 1;
            for (int k = 1; k < L.nop; k++) L.strides[k][0] = a->scalar[k - 1] ? 0 : 1;
        } else {
            L = a->layout;
        }
        auto k = png_ew_strided<F, OT, IT...>;
        PNG_LAUNCH(k, png_blocks_for(L.size, threads), threads, 0, st, f, L, out, in...);
    }
    return pnG_check_launch(what);
}

template <typename F> static int png_unary_run(const pnK_ew_params *prm, const pnG_ew_args *a)
{
    if constexpr (!F::ok) {
        return PNG_UNSUPPORTED;
    } else {
        if (!a) return 0;
        F f;
        f.prm_ = *prm;
        typedef typename F::in_t T;
        return png_ew_run<typename F::out_t>(f, a, "unary", png_mkarg<T>(a, 0));
    }
}

template <typename F> static int png_binary_run(const pnK_ew_params *prm, const pnG_ew_args *a)
{
    if constexpr (!F::ok) {
        return PNG_UNSUPPORTED;
    } else {
        if (!a) return 0;
        F f;
        f.prm_ = *prm;
        typedef typename F::in_t T;
        return png_ew_run<typename F::out_t>(f, a, "binary", png_mkarg<T>(a, 0),
                                             png_mkarg<T>(a, 1));
    }
}

/* The unsigned type of each element size where moves. */
template <int S> struct png_uint_of;
template <> struct png_uint_of<1> {
    typedef uint8_t type;
};
template <> struct png_uint_of<2> {
    typedef uint16_t type;
};
template <> struct png_uint_of<4> {
    typedef uint32_t type;
};
template <> struct png_uint_of<8> {
    typedef uint64_t type;
};

#endif /* PONTE_BACKEND_CUDA_ELEMENTWISE_OPS_CUH */
