/* dtype.c — dtype sizes and names, MLX's type promotion (including weak Python-number
 * scalars) and element conversion between dtypes. */
#include "core.h"

#include <math.h>

size_t pn_dtype_size(pn_dtype t)
{
    switch (t) {
#define X(E, T, S) case E: return sizeof(T);
        PN_FOR_EACH_DTYPE(X)
#undef X
    default: return 0;
    }
}

const char *pn_dtype_name(pn_dtype t)
{
    static const char *names[PN_NUM_DTYPES] = {
        "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
        "int32", "int64", "float16", "float32", "float64", "bfloat16", "complex64"};
    return pnC_dtype_valid(t) ? names[t] : "invalid";
}

static int int_width(pn_dtype t)
{
    switch (t) {
    case PN_UINT8: case PN_INT8: return 1;
    case PN_UINT16: case PN_INT16: return 2;
    case PN_UINT32: case PN_INT32: return 4;
    default: return 8;
    }
}

static pn_dtype int_of_width(int w, bool is_unsigned)
{
    switch (w) {
    case 1: return is_unsigned ? PN_UINT8 : PN_INT8;
    case 2: return is_unsigned ? PN_UINT16 : PN_INT16;
    case 4: return is_unsigned ? PN_UINT32 : PN_INT32;
    default: return is_unsigned ? PN_UINT64 : PN_INT64;
    }
}

/* MLX's promotion table, derived from its rules: bool yields to anything; integers of one
 * signedness take the wider; mixed signedness takes a signed type wide enough, except that
 * uint64 with a signed type gives float32; integers yield to floats; float16 with bfloat16
 * gives float32; complex64 wins over everything. */
pn_dtype pn_promote_types(pn_dtype a, pn_dtype b)
{
    if (a == b) return a;
    if (a == PN_BOOL) return b;
    if (b == PN_BOOL) return a;
    if (a == PN_COMPLEX64 || b == PN_COMPLEX64) return PN_COMPLEX64;
    bool fa = pnC_is_float(a), fb = pnC_is_float(b);
    if (fa && fb) {
        if (a == PN_FLOAT64 || b == PN_FLOAT64) return PN_FLOAT64;
        if (a == PN_FLOAT32 || b == PN_FLOAT32) return PN_FLOAT32;
        return PN_FLOAT32; /* float16 with bfloat16 */
    }
    if (fa) return a;
    if (fb) return b;
    bool ua = pnC_is_unsigned(a), ub = pnC_is_unsigned(b);
    int wa = int_width(a), wb = int_width(b);
    if (ua == ub) return int_of_width(wa > wb ? wa : wb, ua);
    int wu = ua ? wa : wb, ws = ua ? wb : wa;
    if (ws > wu) return int_of_width(ws, false);
    if (wu == 8) return PN_FLOAT32;
    return int_of_width(wu * 2, false);
}

bool pn_issubdtype(pn_dtype t, pn_dtype_category c)
{
    switch (c) {
    case PN_CAT_GENERIC: return true;
    case PN_CAT_NUMBER: return t != PN_BOOL;
    case PN_CAT_INTEGER: return pnC_is_integer(t);
    case PN_CAT_UNSIGNEDINTEGER: return pnC_is_unsigned(t);
    case PN_CAT_SIGNEDINTEGER: return t >= PN_INT8 && t <= PN_INT64;
    case PN_CAT_INEXACT: return pnC_is_inexact(t);
    case PN_CAT_FLOATING: return pnC_is_float(t);
    case PN_CAT_COMPLEXFLOATING: return t == PN_COMPLEX64;
    case PN_CAT_BOOL: return t == PN_BOOL;
    }
    return false;
}

/* Weak scalars (pn_weak_*) are stored exactly (float64, int64, bool) with a->weak set; they
 * adopt the dtype of the strong arrays they meet, as Python numbers do in MLX. */
pn_dtype pnC_result_type(int n, pn_array *const *arrays)
{
    bool have_strong = false, weak_float = false, weak_int = false, weak_complex = false;
    pn_dtype t = PN_BOOL;
    for (int i = 0; i < n; i++) {
        const pn_array *a = arrays[i];
        if (!a) continue;
        if (a->weak) {
            weak_float |= pnC_is_float(a->dtype);
            weak_int |= pnC_is_integer(a->dtype);
            weak_complex |= a->dtype == PN_COMPLEX64;
            continue;
        }
        t = have_strong ? pn_promote_types(t, a->dtype) : a->dtype;
        have_strong = true;
    }
    if (!have_strong) {
        if (weak_complex) return PN_COMPLEX64;
        if (weak_float) return PN_FLOAT32;
        if (weak_int) return PN_INT32;
        return PN_BOOL;
    }
    if (weak_complex && t != PN_COMPLEX64) return PN_COMPLEX64;
    if (weak_float && !pnC_is_inexact(t)) return PN_FLOAT32;
    if (weak_int && t == PN_BOOL) return PN_INT32;
    return t;
}

/* ───────────────────────────── element conversion ───────────────────────────── */

double pnC_load_f64(const void *p, pn_dtype t)
{
    switch (t) {
    case PN_FLOAT16: return pnC_f16_to_f32(*(const pn_float16 *)p);
    case PN_BFLOAT16: return pnC_bf16_to_f32(*(const pn_bfloat16 *)p);
    case PN_COMPLEX64: return crealf(*(const pn_complex64 *)p);
#define X(E, T, S) case E: return (double)*(const T *)p;
        X(PN_BOOL, bool, b) X(PN_UINT8, uint8_t, a) X(PN_UINT16, uint16_t, a)
        X(PN_UINT32, uint32_t, a) X(PN_UINT64, uint64_t, a) X(PN_INT8, int8_t, a)
        X(PN_INT16, int16_t, a) X(PN_INT32, int32_t, a) X(PN_INT64, int64_t, a)
        X(PN_FLOAT32, float, a) X(PN_FLOAT64, double, a)
#undef X
    default: return 0;
    }
}

/* Float to integer conversion that never invokes undefined behaviour: NaN gives 0, out of
 * range values saturate (C leaves them undefined; this is also what most hardware gives). */
#define SAT_CAST(T, lo, hi, v) ((v) != (v) ? (T)0 : (v) <= (double)(lo) ? (T)(lo) : (v) >= (double)(hi) ? (T)(hi) : (T)(v))

void pnC_store_f64(void *p, pn_dtype t, double v)
{
    switch (t) {
    case PN_BOOL: *(bool *)p = v != 0; break;
    case PN_UINT8: *(uint8_t *)p = SAT_CAST(uint8_t, 0, UINT8_MAX, v); break;
    case PN_UINT16: *(uint16_t *)p = SAT_CAST(uint16_t, 0, UINT16_MAX, v); break;
    case PN_UINT32: *(uint32_t *)p = SAT_CAST(uint32_t, 0, UINT32_MAX, v); break;
    case PN_UINT64: *(uint64_t *)p = SAT_CAST(uint64_t, 0, 18446744073709549568.0, v); break;
    case PN_INT8: *(int8_t *)p = SAT_CAST(int8_t, INT8_MIN, INT8_MAX, v); break;
    case PN_INT16: *(int16_t *)p = SAT_CAST(int16_t, INT16_MIN, INT16_MAX, v); break;
    case PN_INT32: *(int32_t *)p = SAT_CAST(int32_t, INT32_MIN, INT32_MAX, v); break;
    case PN_INT64: *(int64_t *)p = SAT_CAST(int64_t, INT64_MIN, 9223372036854774784.0, v); break;
    case PN_FLOAT16: *(pn_float16 *)p = pnC_f32_to_f16((float)v); break;
    case PN_BFLOAT16: *(pn_bfloat16 *)p = pnC_f32_to_bf16((float)v); break;
    case PN_FLOAT32: *(float *)p = (float)v; break;
    case PN_FLOAT64: *(double *)p = v; break;
    case PN_COMPLEX64: *(pn_complex64 *)p = (float)v; break;
    default: break;
    }
}

/* Typed conversion loops: every (source, destination) pair goes through one macro. Integer
 * sources convert exactly (int64 -> int64 does not pass through double). */
static inline float h2f(pn_float16 h) { return pnC_f16_to_f32(h); }
static inline float b2f(pn_bfloat16 h) { return pnC_bf16_to_f32(h); }

#define CONVERT_LOOP(EXPR)                                                                     \
    _Pragma("omp parallel for if (n > PNC_PAR_GRAIN)") for (int64_t i = 0; i < n; i++)         \
    {                                                                                          \
        EXPR;                                                                                  \
    }

static void convert_to_double(const void *src, pn_dtype st, double *d, int64_t n)
{
    switch (st) {
#define X(E, T, S) case E: CONVERT_LOOP(d[i] = (double)((const T *)src)[i]) break;
        X(PN_BOOL, bool, b) X(PN_UINT8, uint8_t, a) X(PN_UINT16, uint16_t, a)
        X(PN_UINT32, uint32_t, a) X(PN_UINT64, uint64_t, a) X(PN_INT8, int8_t, a)
        X(PN_INT16, int16_t, a) X(PN_INT32, int32_t, a) X(PN_INT64, int64_t, a)
        X(PN_FLOAT32, float, a) X(PN_FLOAT64, double, a)
#undef X
    case PN_FLOAT16: CONVERT_LOOP(d[i] = h2f(((const pn_float16 *)src)[i])) break;
    case PN_BFLOAT16: CONVERT_LOOP(d[i] = b2f(((const pn_bfloat16 *)src)[i])) break;
    case PN_COMPLEX64: CONVERT_LOOP(d[i] = crealf(((const pn_complex64 *)src)[i])) break;
    default: break;
    }
}

/* Fast same-family paths: the common astype pairs run as one typed loop each. */
#define FAST_PAIR(SE, ST, DE, DT, EXPR)                                                        \
    if (st == SE && dt == DE) {                                                                \
        const ST *s = src;                                                                     \
        DT *d = dst;                                                                           \
        CONVERT_LOOP(d[i] = EXPR);                                                             \
        return;                                                                                \
    }

void pnC_convert(const void *src, pn_dtype st, void *dst, pn_dtype dt, int64_t n)
{
    if (n <= 0) return;
    if (st == dt) {
        memcpy(dst, src, (size_t)n * pn_dtype_size(st));
        return;
    }
    FAST_PAIR(PN_FLOAT32, float, PN_FLOAT16, pn_float16, pnC_f32_to_f16(s[i]))
    FAST_PAIR(PN_FLOAT32, float, PN_BFLOAT16, pn_bfloat16, pnC_f32_to_bf16(s[i]))
    FAST_PAIR(PN_FLOAT16, pn_float16, PN_FLOAT32, float, pnC_f16_to_f32(s[i]))
    FAST_PAIR(PN_BFLOAT16, pn_bfloat16, PN_FLOAT32, float, pnC_bf16_to_f32(s[i]))
    FAST_PAIR(PN_FLOAT32, float, PN_FLOAT64, double, (double)s[i])
    FAST_PAIR(PN_FLOAT64, double, PN_FLOAT32, float, (float)s[i])
    FAST_PAIR(PN_INT32, int32_t, PN_FLOAT32, float, (float)s[i])
    FAST_PAIR(PN_BOOL, bool, PN_FLOAT32, float, (float)s[i])
    if (dt == PN_COMPLEX64) {
        pn_complex64 *d = dst;
        if (st == PN_COMPLEX64) return; /* handled by memcpy above */
        CONVERT_LOOP(d[i] = (float)pnC_load_f64((const char *)src + i * pn_dtype_size(st), st));
        return;
    }
    if (st == PN_COMPLEX64 && dt == PN_BOOL) { /* nonzero if either part is nonzero */
        const pn_complex64 *s = src;
        bool *d = dst;
        CONVERT_LOOP(d[i] = crealf(s[i]) != 0 || cimagf(s[i]) != 0);
        return;
    }
    /* Integer to integer: exact through int64/uint64 (two's complement wrap, as C and MLX). */
    if ((pnC_is_integer(st) || st == PN_BOOL) && pnC_is_integer(dt)) {
        size_t ss = pn_dtype_size(st), ds = pn_dtype_size(dt);
        CONVERT_LOOP({
            const char *sp = (const char *)src + i * ss;
            uint64_t u;
            switch (st) {
            case PN_BOOL: u = *(const bool *)sp; break;
            case PN_UINT8: u = *(const uint8_t *)sp; break;
            case PN_UINT16: u = *(const uint16_t *)sp; break;
            case PN_UINT32: u = *(const uint32_t *)sp; break;
            case PN_UINT64: u = *(const uint64_t *)sp; break;
            case PN_INT8: u = (uint64_t)(int64_t)*(const int8_t *)sp; break;
            case PN_INT16: u = (uint64_t)(int64_t)*(const int16_t *)sp; break;
            case PN_INT32: u = (uint64_t)(int64_t)*(const int32_t *)sp; break;
            default: u = (uint64_t)*(const int64_t *)sp; break;
            }
            memcpy((char *)dst + i * ds, &u, ds); /* little-endian truncation */
        });
        return;
    }
    /* Everything else through double, in chunks so the scratch stays small. */
    enum { CHUNK = 4096 };
    size_t ss = pn_dtype_size(st), ds = pn_dtype_size(dt);
#pragma omp parallel for if (n > PNC_PAR_GRAIN)
    for (int64_t c = 0; c < n; c += CHUNK) {
        double tmp[CHUNK];
        int64_t m = n - c < CHUNK ? n - c : CHUNK;
        convert_to_double((const char *)src + c * ss, st, tmp, m);
        for (int64_t i = 0; i < m; i++) pnC_store_f64((char *)dst + (c + i) * ds, dt, tmp[i]);
    }
}

/* See ponte.h. */
bool pn_can_cast(pn_dtype from, pn_dtype to)
{
    if (!pnC_dtype_valid(from) || !pnC_dtype_valid(to)) return false;
    return pn_promote_types(from, to) == to;
}
