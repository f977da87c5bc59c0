/* test_elementwise.c — the elementwise ops (unary, binary, where, clip, isclose, ...) against
 * float64 references computed here: several shapes (0-d, empty, 1-d, 3-d), broadcasting,
 * strided views, every dtype class, weak-scalar promotion, error cases, gradients
 * (test_gradcheck) and the memory bound of long elementwise chains. */
#include "harness.h"

#include "core/core.h"

#include <complex.h>
#include <string.h>

/* ───────────────────────────── helpers ───────────────────────────── */

static const int64_t SHAPE_3D[3] = {2, 3, 4};
static const int64_t SHAPE_1D[1] = {7};
static const int64_t SHAPE_EMPTY[2] = {0, 3};

typedef struct shape_case {
    const int64_t *shape;
    int ndim;
} shape_case;
static const shape_case SHAPES[] = {{NULL, 0}, {SHAPE_EMPTY, 2}, {SHAPE_1D, 1}, {SHAPE_3D, 3}};
#define NSHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

static const pn_dtype FLOATS[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};

static bool is_float(pn_dtype t)
{
    return t == PN_FLOAT16 || t == PN_FLOAT32 || t == PN_FLOAT64 || t == PN_BFLOAT16;
}

/* Tolerance of a result of dtype t (relative and absolute). */
static double tol_of(pn_dtype t) { return is_float(t) ? 2 * test_tol(t) : 0; }

/* Flat index into an input of shape ishape (broadcast against oshape) of the output's flat
 * index i. */
static int64_t bcast_index(int64_t i, const int64_t *oshape, int ond, const int64_t *ishape,
                           int ind)
{
    int64_t idx = 0, stride = 1;
    for (int d = ond - 1; d >= 0; d--) {
        int64_t coord = i % oshape[d];
        i /= oshape[d];
        int id = d - (ond - ind);
        if (id >= 0) {
            if (ishape[id] != 1) idx += coord * stride;
            stride *= ishape[id];
        }
    }
    return idx;
}

/* A transposed (non-contiguous) view with the same values as a random array of `shape`
 * (2-d): returns transpose(random(shape[1], shape[0])), values in *vals (row-major of the
 * view). */
static pn_array *random_transposed(const int64_t *shape, pn_dtype t, double lo, double hi,
                                   double **vals)
{
    int64_t ts[2] = {shape[1], shape[0]};
    pn_array *base = test_random_array(ts, 2, t, lo, hi);
    pn_array *v = pn_transpose(base, NULL, 0);
    *vals = test_to_f64(v);
    return v;
}

/* ───────────────────────────── unary ───────────────────────────── */

typedef pn_array *(*unary_fn)(pn_array *);
typedef double (*ref1_fn)(double);

static double r_abs(double x) { return fabs(x); }
static double r_neg(double x) { return -x; }
static double r_sign(double x) { return x > 0 ? 1 : x < 0 ? -1 : x; }
static double r_rsqrt(double x) { return 1 / sqrt(x); }
static double r_square(double x) { return x * x; }
static double r_recip(double x) { return 1 / x; }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_degrees(double x) { return x * 180 / M_PI; }
static double r_radians(double x) { return x * M_PI / 180; }
static double r_not(double x) { return x == 0; }
static double r_id(double x) { return x; }
static double r_zero(double x) { return 0; }
static double r_erfinv(double y) /* bisection: slow but independent of the kernel */
{
    double lo = -6, hi = 6;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (erf(mid) < y)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

enum { R_SAME, R_FLOAT, R_BOOL };                               /* the expected result dtype */
enum { I_NONE = 0, I_I32 = 1, I_U8 = 2, I_BOOL = 4, I_I8 = 8 }; /* integer dtypes tested */

typedef struct unary_case {
    const char *name;
    unary_fn fn;
    ref1_fn ref;
    double lo, hi;
    int rule;
    int ints;
} unary_case;

static const unary_case UNARY[] = {
    {"abs", pn_abs, r_abs, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL | I_I8},
    {"negative", pn_negative, r_neg, -5, 5, R_SAME, I_I32 | I_I8},
    {"sign", pn_sign, r_sign, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL},
    {"sqrt", pn_sqrt, sqrt, 0.01, 10, R_FLOAT, I_I32 | I_U8 | I_BOOL},
    {"rsqrt", pn_rsqrt, r_rsqrt, 0.1, 10, R_FLOAT, I_NONE},
    {"square", pn_square, r_square, -5, 5, R_SAME, I_I32 | I_U8 | I_I8},
    {"reciprocal", pn_reciprocal, r_recip, 0.5, 5, R_FLOAT, I_I32},
    {"exp", pn_exp, exp, -5, 5, R_FLOAT, I_I32 | I_U8},
    {"expm1", pn_expm1, expm1, -1, 1, R_FLOAT, I_I32},
    {"log", pn_log, log, 0.1, 10, R_FLOAT, I_NONE},
    {"log1p", pn_log1p, log1p, -0.5, 5, R_FLOAT, I_U8},
    {"log2", pn_log2, log2, 0.1, 10, R_FLOAT, I_NONE},
    {"log10", pn_log10, log10, 0.1, 10, R_FLOAT, I_NONE},
    {"sin", pn_sin, sin, -3, 3, R_FLOAT, I_I32},
    {"cos", pn_cos, cos, -3, 3, R_FLOAT, I_I32},
    {"tan", pn_tan, tan, -1.2, 1.2, R_FLOAT, I_NONE},
    {"arcsin", pn_arcsin, asin, -0.95, 0.95, R_FLOAT, I_NONE},
    {"arccos", pn_arccos, acos, -0.95, 0.95, R_FLOAT, I_NONE},
    {"arctan", pn_arctan, atan, -5, 5, R_FLOAT, I_I32},
    {"sinh", pn_sinh, sinh, -3, 3, R_FLOAT, I_I32},
    {"cosh", pn_cosh, cosh, -3, 3, R_FLOAT, I_I32},
    {"tanh", pn_tanh, tanh, -3, 3, R_FLOAT, I_I32},
    {"arcsinh", pn_arcsinh, asinh, -5, 5, R_FLOAT, I_I32},
    {"arccosh", pn_arccosh, acosh, 1.1, 5, R_FLOAT, I_NONE},
    {"arctanh", pn_arctanh, atanh, -0.9, 0.9, R_FLOAT, I_NONE},
    {"floor", pn_floor, floor, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL},
    {"ceil", pn_ceil, ceil, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL},
    {"sigmoid", pn_sigmoid, r_sigmoid, -8, 8, R_FLOAT, I_I32},
    {"erf", pn_erf, erf, -2, 2, R_FLOAT, I_I32},
    {"erfinv", pn_erfinv, r_erfinv, -0.95, 0.95, R_FLOAT, I_NONE},
    {"logical_not", pn_logical_not, r_not, -2, 2, R_BOOL, I_I32 | I_U8 | I_BOOL},
    {"conjugate", pn_conjugate, r_id, -5, 5, R_SAME, I_I32 | I_BOOL},
    {"real", pn_real, r_id, -5, 5, R_SAME, I_I32},
    {"imag", pn_imag, r_zero, -5, 5, R_SAME, I_I32},
    {"degrees", pn_degrees, r_degrees, -5, 5, R_FLOAT, I_I32},
    {"radians", pn_radians, r_radians, -200, 200, R_FLOAT, I_I32},
    {"stop_gradient", pn_stop_gradient, r_id, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL},
};
#define NUNARY ((int)(sizeof UNARY / sizeof UNARY[0]))

/* Runs one unary case on one dtype and shape; returns whether it matched. */
static int check_unary(const unary_case *c, pn_dtype t, const int64_t *shape, int ndim)
{
    char what[96];
    snprintf(what, sizeof what, "%s(%s, ndim %d)", c->name, pn_dtype_name(t), ndim);
    double lo = c->lo, hi = c->hi;
    if (pnC_is_unsigned(t) && lo < 0) lo = 0;
    pn_array *x = test_random_array(shape, ndim, t, lo, hi);
    pn_array *y = c->fn(x);
    double *xv = test_to_f64(x);
    int64_t n = pn_size(x);
    double *ref = malloc((size_t)(n + 1) * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        ref[i] = c->ref(xv[i]);
    pn_dtype out = c->rule == R_BOOL                    ? PN_BOOL
                   : c->rule == R_FLOAT && !is_float(t) ? PN_FLOAT32
                                                        : t;
    if (t == PN_BOOL && c->rule == R_SAME && !is_float(out))
        for (int64_t i = 0; i < n; i++)
            ref[i] = ref[i] != 0;
    int ok = test_check_values(what, y, shape, ndim, out, ref, tol_of(out), tol_of(out));
    free(ref);
    free(xv);
    return ok;
}

TEST(unary_ops_all_dtypes_and_shapes)
{
    pn_scope_push();
    static const pn_dtype INTS[] = {PN_INT32, PN_UINT8, PN_BOOL, PN_INT8};
    int checked = 0;
    for (int c = 0; c < NUNARY; c++) {
        for (int s = 0; s < NSHAPES; s++) {
            for (int k = 0; k < 4; k++)
                checked += check_unary(&UNARY[c], FLOATS[k], SHAPES[s].shape, SHAPES[s].ndim);
            for (int k = 0; k < 4; k++)
                if (UNARY[c].ints & (1 << k))
                    checked += check_unary(&UNARY[c], INTS[k], SHAPES[s].shape, SHAPES[s].ndim);
        }
    }
    CHECK(checked > NUNARY * NSHAPES * 4);
    pn_scope_pop();
}

TEST(unary_noncontiguous_input)
{
    pn_scope_push();
    const int64_t shape[2] = {5, 6};
    for (int c = 0; c < NUNARY; c++) {
        for (int k = 0; k < 4; k++) {
            double *xv = NULL;
            pn_array *x = random_transposed(shape, FLOATS[k], UNARY[c].lo, UNARY[c].hi, &xv);
            CHECK(!pnC_row_contiguous(x) || !pn_is_evaluated(x));
            pn_array *y = UNARY[c].fn(x);
            double ref[30];
            for (int i = 0; i < 30; i++)
                ref[i] = UNARY[c].ref(xv[i]);
            pn_dtype out = UNARY[c].rule == R_BOOL ? PN_BOOL : FLOATS[k];
            test_check_values(UNARY[c].name, y, shape, 2, out, ref, tol_of(out), tol_of(out));
            free(xv);
        }
    }
    pn_scope_pop();
}

TEST(unary_large_threaded)
{
    pn_scope_push();
    int64_t n = test_quick() ? 40000 : 300001; /* above the threading grain, odd length */
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -3, 3);
    double *xv = test_to_f64(x), *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        ref[i] = tanh(xv[i]);
    test_check_values("tanh large", pn_tanh(x), &n, 1, PN_FLOAT32, ref, 1e-5, 1e-6);
    /* strided (every other element) through the general path */
    pn_array *big = test_random_array((int64_t[]){2 * n}, 1, PN_FLOAT32, -3, 3);
    pn_array *v = pn_slice(big, (int64_t[]){0}, (int64_t[]){2 * n}, (int64_t[]){2}, 1);
    double *bv = test_to_f64(big);
    for (int64_t i = 0; i < n; i++)
        ref[i] = exp(bv[2 * i]);
    test_check_values("exp strided", pn_exp(v), &n, 1, PN_FLOAT32, ref, 1e-5, 1e-6);
    free(bv);
    free(xv);
    free(ref);
    pn_scope_pop();
}

TEST(unary_special_values)
{
    pn_scope_push();
    const double v[] = {0.0, -0.0, 1.5, -2.5, INFINITY, -INFINITY, NAN, 3.0};
    const int64_t n = 8;
    for (int k = 0; k < 4; k++) {
        pn_dtype t = FLOATS[k];
        pn_array *x = pn_astype(pn_array_from_data(v, &n, 1, PN_FLOAT64), t);
        double r_isnan[8], r_isinf[8], r_fin[8], r_pos[8], r_neg[8];
        for (int i = 0; i < n; i++) {
            r_isnan[i] = isnan(v[i]);
            r_isinf[i] = isinf(v[i]) != 0;
            r_fin[i] = isfinite(v[i]);
            r_pos[i] = v[i] == INFINITY;
            r_neg[i] = v[i] == -INFINITY;
        }
        test_check_values("isnan", pn_isnan(x), &n, 1, PN_BOOL, r_isnan, 0, 0);
        test_check_values("isinf", pn_isinf(x), &n, 1, PN_BOOL, r_isinf, 0, 0);
        test_check_values("isfinite", pn_isfinite(x), &n, 1, PN_BOOL, r_fin, 0, 0);
        test_check_values("isposinf", pn_isposinf(x), &n, 1, PN_BOOL, r_pos, 0, 0);
        test_check_values("isneginf", pn_isneginf(x), &n, 1, PN_BOOL, r_neg, 0, 0);
        /* nan_to_num: defaults are the dtype's extremes, explicit values override */
        double big = t == PN_FLOAT16    ? 65504.0
                     : t == PN_BFLOAT16 ? 3.3895313892515355e38
                     : t == PN_FLOAT32  ? 3.4028234663852886e38
                                        : 1.7976931348623157e308;
        double r1[8], r2[8];
        for (int i = 0; i < n; i++) {
            r1[i] = isnan(v[i]) ? 0 : v[i] == INFINITY ? big : v[i] == -INFINITY ? -big : v[i];
            r2[i] = isnan(v[i]) ? 7 : v[i] == INFINITY ? 100 : v[i] == -INFINITY ? -100 : v[i];
        }
        test_check_values("nan_to_num default", pn_nan_to_num(x, 0, NULL, NULL), &n, 1, t, r1, 0,
                          0);
        test_check_values("nan_to_num values", pn_nan_to_num(x, 7, &(double){100}, &(double){-100}),
                          &n, 1, t, r2, 0, 0);
        /* sign keeps NaN and signed zeros; maximum/minimum propagate NaN */
        double rs[8];
        for (int i = 0; i < n; i++)
            rs[i] = v[i] > 0 ? 1 : v[i] < 0 ? -1 : v[i];
        test_check_values("sign special", pn_sign(x), &n, 1, t, rs, 0, 0);
        double rm[8];
        for (int i = 0; i < n; i++)
            rm[i] = isnan(v[i]) ? NAN : fmax(v[i], 1.0);
        test_check_values("maximum nan", pn_maximum(x, pn_weak_float(1.0)), &n, 1, t, rm, 0, 0);
        for (int i = 0; i < n; i++)
            rm[i] = isnan(v[i]) ? NAN : fmin(v[i], 1.0);
        test_check_values("minimum nan", pn_minimum(pn_weak_float(1.0), x), &n, 1, t, rm, 0, 0);
    }
    /* integer inputs: predicates are constant, nan_to_num is the identity */
    pn_array *xi = test_random_array(&n, 1, PN_INT32, -5, 5);
    double zeros[8] = {0}, ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    test_check_values("isnan int", pn_isnan(xi), &n, 1, PN_BOOL, zeros, 0, 0);
    test_check_values("isfinite int", pn_isfinite(xi), &n, 1, PN_BOOL, ones, 0, 0);
    double *xiv = test_to_f64(xi);
    test_check_values("nan_to_num int", pn_nan_to_num(xi, 0, NULL, NULL), &n, 1, PN_INT32, xiv, 0,
                      0);
    free(xiv);
    pn_scope_pop();
}

TEST(round_half_to_even_and_decimals)
{
    pn_scope_push();
    const double v[] = {0.5, 1.5, 2.5, -0.5, -1.5, 2.675, 1234.5678, -3.14159};
    const int64_t n = 8;
    pn_array *x = pn_array_from_data(v, &n, 1, PN_FLOAT64);
    double r0[8], r2[8], rm2[8];
    for (int i = 0; i < n; i++) {
        r0[i] = nearbyint(v[i]);
        r2[i] = nearbyint(v[i] * 100) / 100;
        rm2[i] = nearbyint(v[i] / 100) * 100;
    }
    test_check_values("round 0", pn_round(x, 0), &n, 1, PN_FLOAT64, r0, 0, 0);
    test_check_values("round 2", pn_round(x, 2), &n, 1, PN_FLOAT64, r2, 1e-12, 1e-12);
    test_check_values("round -2", pn_round(x, -2), &n, 1, PN_FLOAT64, rm2, 1e-12, 1e-12);
    pn_array *xf = pn_astype(x, PN_FLOAT32);
    double *xfv = test_to_f64(xf);
    for (int i = 0; i < n; i++)
        r0[i] = nearbyint(xfv[i]);
    test_check_values("round f32", pn_round(xf, 0), &n, 1, PN_FLOAT32, r0, 0, 0);
    free(xfv);
    const int32_t iv[] = {149, 150, 151, 250, -150, -149, 7, 0};
    pn_array *xi = pn_array_from_data(iv, &n, 1, PN_INT32);
    double ri[8], rid[8];
    for (int i = 0; i < n; i++) {
        ri[i] = iv[i];
        rid[i] = nearbyint(iv[i] / 100.0) * 100;
    }
    test_check_values("round int", pn_round(xi, 1), &n, 1, PN_INT32, ri, 0, 0);
    test_check_values("round int -2", pn_round(xi, -2), &n, 1, PN_INT32, rid, 0, 0);
    pn_scope_pop();
}

TEST(bitwise_invert)
{
    pn_scope_push();
    const int64_t n = 6;
    const int32_t i32[] = {0, 1, -1, 5, -6, 1000};
    const uint8_t u8[] = {0, 1, 255, 5, 6, 200};
    const bool b[] = {0, 1, 1, 0, 1, 0};
    double r32[6], ru8[6], rb[6];
    for (int i = 0; i < n; i++) {
        r32[i] = ~i32[i];
        ru8[i] = (uint8_t)~u8[i];
        rb[i] = !b[i];
    }
    test_check_values("invert i32", pn_bitwise_invert(pn_array_from_data(i32, &n, 1, PN_INT32)), &n,
                      1, PN_INT32, r32, 0, 0);
    test_check_values("invert u8", pn_bitwise_invert(pn_array_from_data(u8, &n, 1, PN_UINT8)), &n,
                      1, PN_UINT8, ru8, 0, 0);
    test_check_values("invert bool", pn_bitwise_invert(pn_array_from_data(b, &n, 1, PN_BOOL)), &n,
                      1, PN_BOOL, rb, 0, 0);
    CHECK_ERR(pn_bitwise_invert(pn_ones(&n, 1, PN_FLOAT32)), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── binary ───────────────────────────── */

typedef pn_array *(*binary_fn)(pn_array *, pn_array *);
typedef double (*ref2_fn)(double, double);

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_fdiv(double a, double b) { return floor(a / b); }
static double r_rem(double a, double b)
{
    double r = fmod(a, b);
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}
static double r_max(double a, double b) { return a > b ? a : b; }
static double r_min(double a, double b) { return a < b ? a : b; }
static double r_lae(double a, double b) { return log(exp(a) + exp(b)); }
static double r_eq(double a, double b) { return a == b; }
static double r_ne(double a, double b) { return a != b; }
static double r_lt(double a, double b) { return a < b; }
static double r_le(double a, double b) { return a <= b; }
static double r_gt(double a, double b) { return a > b; }
static double r_ge(double a, double b) { return a >= b; }
static double r_and(double a, double b) { return a != 0 && b != 0; }
static double r_or(double a, double b) { return a != 0 || b != 0; }
static double r_band(double a, double b) { return (double)((int64_t)a & (int64_t)b); }
static double r_bor(double a, double b) { return (double)((int64_t)a | (int64_t)b); }
static double r_bxor(double a, double b) { return (double)((int64_t)a ^ (int64_t)b); }
static double r_shl(double a, double b) { return a * ldexp(1, (int)b); }
static double r_shr(double a, double b) { return floor(a / ldexp(1, (int)b)); }

typedef struct binary_case {
    const char *name;
    binary_fn fn;
    ref2_fn ref;
    double alo, ahi, blo, bhi;
    int rule;
    int ints;
    bool floats; /* tested on the float dtypes */
    bool whole;  /* integer-valued data (ties for comparisons) */
} binary_case;

static const binary_case BINARY[] = {
    {"add", pn_add, r_add, -5, 5, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL, true, false},
    {"subtract", pn_subtract, r_sub, -5, 5, -5, 5, R_SAME, I_I32 | I_I8, true, false},
    {"multiply", pn_multiply, r_mul, -5, 5, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL, true, false},
    {"divide", pn_divide, r_div, -5, 5, 0.5, 5, R_FLOAT, I_I32, true, false},
    {"floor_divide", pn_floor_divide, r_fdiv, -20, 20, -6, 6, R_SAME, I_I32 | I_I8, true, true},
    {"remainder", pn_remainder, r_rem, -20, 20, -6, 6, R_SAME, I_I32 | I_I8, true, true},
    {"power", pn_power, pow, 0.5, 3, -2, 2, R_SAME, I_NONE, true, false},
    {"power_int", pn_power, pow, -3, 4, 0, 5, R_SAME, I_I32 | I_I8, false, true},
    {"maximum", pn_maximum, r_max, -5, 5, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL, true, true},
    {"minimum", pn_minimum, r_min, -5, 5, -5, 5, R_SAME, I_I32 | I_U8 | I_BOOL, true, true},
    {"arctan2", pn_arctan2, atan2, -5, 5, -5, 5, R_FLOAT, I_I32, true, false},
    {"logaddexp", pn_logaddexp, r_lae, -10, 10, -10, 10, R_FLOAT, I_I32, true, false},
    {"equal", pn_equal, r_eq, -3, 3, -3, 3, R_BOOL, I_I32 | I_U8 | I_BOOL, true, true},
    {"not_equal", pn_not_equal, r_ne, -3, 3, -3, 3, R_BOOL, I_I32 | I_U8 | I_BOOL, true, true},
    {"less", pn_less, r_lt, -3, 3, -3, 3, R_BOOL, I_I32 | I_U8 | I_BOOL, true, true},
    {"less_equal", pn_less_equal, r_le, -3, 3, -3, 3, R_BOOL, I_I32 | I_U8, true, true},
    {"greater", pn_greater, r_gt, -3, 3, -3, 3, R_BOOL, I_I32 | I_U8, true, true},
    {"greater_equal", pn_greater_equal, r_ge, -3, 3, -3, 3, R_BOOL, I_I32 | I_BOOL, true, true},
    {"logical_and", pn_logical_and, r_and, -2, 2, -2, 2, R_BOOL, I_I32 | I_BOOL, true, true},
    {"logical_or", pn_logical_or, r_or, -2, 2, -2, 2, R_BOOL, I_I32 | I_U8, true, true},
    {"bitwise_and", pn_bitwise_and, r_band, -100, 100, -100, 100, R_SAME,
     I_I32 | I_U8 | I_BOOL | I_I8, false, true},
    {"bitwise_or", pn_bitwise_or, r_bor, -100, 100, -100, 100, R_SAME, I_I32 | I_U8 | I_BOOL, false,
     true},
    {"bitwise_xor", pn_bitwise_xor, r_bxor, -100, 100, -100, 100, R_SAME, I_I32 | I_U8 | I_BOOL,
     false, true},
    {"left_shift", pn_left_shift, r_shl, -100, 100, 0, 8, R_SAME, I_I32, false, true},
    {"right_shift", pn_right_shift, r_shr, -100, 100, 0, 8, R_SAME, I_I32 | I_U8, false, true},
};
#define NBINARY ((int)(sizeof BINARY / sizeof BINARY[0]))

/* Runs one binary case on a dtype and a pair of shapes (broadcast). */
static int check_binary(const binary_case *c, pn_dtype t, const int64_t *sa, int na,
                        const int64_t *sb, int nb)
{
    char what[96];
    snprintf(what, sizeof what, "%s(%s, ndim %d/%d)", c->name, pn_dtype_name(t), na, nb);
    double alo = c->alo, blo = c->blo;
    if (pnC_is_unsigned(t)) {
        alo = alo < 0 ? 0 : alo;
        blo = blo < 0 ? 0 : blo;
    }
    pn_array *a = test_random_array(sa, na, t, alo, c->ahi);
    pn_array *b = test_random_array(sb, nb, t, blo, c->bhi);
    if (c->whole && is_float(t)) {
        a = pn_floor(a);
        b = pn_floor(b);
    }
    if (c->ref == r_fdiv || c->ref == r_rem) /* no division by zero */
        b = pn_where(pn_equal(b, pn_weak_int(0)), pn_weak_int(1), b);
    pn_array *y = c->fn(a, b);
    int64_t os[PNC_MAX_NDIM];
    int on = na > nb ? na : nb;
    for (int d = 0; d < on; d++) {
        int da = d - (on - na), db = d - (on - nb);
        int64_t ea = da >= 0 ? sa[da] : 1, eb = db >= 0 ? sb[db] : 1;
        os[d] = ea == 1 ? eb : ea;
    }
    double *av = test_to_f64(a), *bv = test_to_f64(b);
    int64_t n = pnC_shape_size(os, on);
    double *ref = malloc((size_t)(n + 1) * sizeof *ref);
    for (int64_t i = 0; i < n; i++) {
        double x = av[bcast_index(i, os, on, sa, na)], z = bv[bcast_index(i, os, on, sb, nb)];
        ref[i] = c->ref(x, z);
    }
    pn_dtype out = c->rule == R_BOOL                    ? PN_BOOL
                   : c->rule == R_FLOAT && !is_float(t) ? PN_FLOAT32
                                                        : t;
    if (t == PN_BOOL && out == PN_BOOL)
        for (int64_t i = 0; i < n; i++)
            ref[i] = ref[i] != 0;
    int ok = test_check_values(what, y, os, on, out, ref, tol_of(out), tol_of(out));
    free(ref);
    free(av);
    free(bv);
    return ok;
}

TEST(binary_ops_all_dtypes_and_shapes)
{
    pn_scope_push();
    static const pn_dtype INTS[] = {PN_INT32, PN_UINT8, PN_BOOL, PN_INT8};
    static const int64_t s315[3] = {3, 1, 5}, s45[2] = {4, 5}, s3[1] = {3};
    const struct {
        const int64_t *a;
        int na;
        const int64_t *b;
        int nb;
    } pairs[] = {
        {SHAPE_3D, 3, SHAPE_3D, 3},                          /* same shape: the dense path */
        {s315, 3, s45, 2},                                   /* broadcast both ways */
        {NULL, 0, SHAPE_1D, 1},                              /* scalar with a vector */
        {SHAPE_1D, 1, NULL, 0},     {SHAPE_EMPTY, 2, s3, 1}, /* empty */
        {NULL, 0, NULL, 0},                                  /* 0-d */
    };
    int checked = 0;
    for (int c = 0; c < NBINARY; c++) {
        for (int s = 0; s < (int)(sizeof pairs / sizeof pairs[0]); s++) {
            for (int k = 0; k < 4 && BINARY[c].floats; k++)
                checked += check_binary(&BINARY[c], FLOATS[k], pairs[s].a, pairs[s].na, pairs[s].b,
                                        pairs[s].nb);
            for (int k = 0; k < 4; k++)
                if (BINARY[c].ints & (1 << k))
                    checked += check_binary(&BINARY[c], INTS[k], pairs[s].a, pairs[s].na,
                                            pairs[s].b, pairs[s].nb);
        }
    }
    CHECK(checked > NBINARY * 6);
    pn_scope_pop();
}

TEST(binary_noncontiguous_and_large)
{
    pn_scope_push();
    const int64_t shape[2] = {6, 5};
    double *av = NULL;
    pn_array *a = random_transposed(shape, PN_FLOAT32, -5, 5, &av);
    pn_array *b = test_random_array(shape, 2, PN_FLOAT32, -5, 5);
    double *bv = test_to_f64(b), ref[30];
    for (int i = 0; i < 30; i++)
        ref[i] = av[i] * bv[i];
    test_check_values("multiply transposed", pn_multiply(a, b), shape, 2, PN_FLOAT32, ref, 1e-6,
                      1e-6);
    for (int i = 0; i < 30; i++)
        ref[i] = av[i] - av[i] * 2;
    test_check_values("transposed twice", pn_subtract(a, pn_add(a, a)), shape, 2, PN_FLOAT32, ref,
                      1e-6, 1e-6);
    free(av);
    free(bv);
    /* large: threaded dense path, scalar path and the broadcast (bias) path */
    int64_t rows = test_quick() ? 64 : 512, cols = 999;
    int64_t s2[2] = {rows, cols};
    pn_array *x = test_random_array(s2, 2, PN_FLOAT32, -1, 1);
    pn_array *y = test_random_array(s2, 2, PN_FLOAT32, -1, 1);
    pn_array *bias = test_random_array(&cols, 1, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), *biasv = test_to_f64(bias);
    int64_t n = rows * cols;
    double *r = malloc((size_t)n * sizeof *r);
    for (int64_t i = 0; i < n; i++)
        r[i] = (double)(float)(xv[i] + yv[i]);
    test_check_values("add large", pn_add(x, y), s2, 2, PN_FLOAT32, r, 1e-6, 1e-7);
    for (int64_t i = 0; i < n; i++)
        r[i] = xv[i] * 3;
    test_check_values("scalar large", pn_multiply(pn_weak_float(3), x), s2, 2, PN_FLOAT32, r, 1e-6,
                      1e-7);
    for (int64_t i = 0; i < n; i++)
        r[i] = xv[i] + biasv[i % cols];
    test_check_values("bias large", pn_add(x, bias), s2, 2, PN_FLOAT32, r, 1e-6, 1e-7);
    for (int64_t i = 0; i < n; i++)
        r[i] = xv[i] > yv[i] ? xv[i] : biasv[i % cols];
    test_check_values("where large", pn_where(pn_greater(x, y), x, bias), s2, 2, PN_FLOAT32, r, 0,
                      0);
    free(r);
    free(xv);
    free(yv);
    free(biasv);
    pn_scope_pop();
}

TEST(integer_division_and_shifts_edge_cases)
{
    pn_scope_push();
    const int64_t n = 8;
    const int32_t a[] = {7, -7, 7, -7, 5, INT32_MIN, 0, 9};
    const int32_t b[] = {2, 2, -2, -2, 0, -1, 3, 0};
    pn_array *x = pn_array_from_data(a, &n, 1, PN_INT32),
             *y = pn_array_from_data(b, &n, 1, PN_INT32);
    const double q[] = {3, -4, -4, 3, 0, INT32_MIN, 0, 0}; /* x // 0 gives 0, INT_MIN // -1 wraps */
    const double r[] = {1, 1, -1, -1, 0, 0, 0, 0};
    test_check_values("floor_divide int", pn_floor_divide(x, y), &n, 1, PN_INT32, q, 0, 0);
    test_check_values("remainder int", pn_remainder(x, y), &n, 1, PN_INT32, r, 0, 0);
    pn_array *dm[2];
    CHECK(pn_divmod(x, y, dm) == 0);
    test_check_values("divmod q", dm[0], &n, 1, PN_INT32, q, 0, 0);
    test_check_values("divmod r", dm[1], &n, 1, PN_INT32, r, 0, 0);
    /* float divmod: Python's signs */
    const double fa[] = {7.5, -7.5, 7.5, -7.5, 1, 2, 3, 4}, fb[] = {2, 2, -2, -2, 0.5, 3, -3, 8};
    pn_array *fx = pn_array_from_data(fa, &n, 1, PN_FLOAT64),
             *fy = pn_array_from_data(fb, &n, 1, PN_FLOAT64);
    CHECK(pn_divmod(fx, fy, dm) == 0);
    double fq[8], fr[8];
    for (int i = 0; i < n; i++) {
        fq[i] = floor(fa[i] / fb[i]);
        fr[i] = r_rem(fa[i], fb[i]);
    }
    test_check_values("divmod float q", dm[0], &n, 1, PN_FLOAT64, fq, 0, 0);
    test_check_values("divmod float r", dm[1], &n, 1, PN_FLOAT64, fr, 1e-15, 1e-15);
    /* shifts: out-of-range counts give 0 (or -1 for negative values shifted right) */
    const int32_t sv[] = {1, -8, 3, -1, 1, 100, -100, 5}, sc[] = {0, 1, 31, 40, 64, -1, 70, 2};
    pn_array *sx = pn_array_from_data(sv, &n, 1, PN_INT32),
             *sy = pn_array_from_data(sc, &n, 1, PN_INT32);
    const double shl[] = {1, -16, (double)INT32_MIN, 0, 0, 0, 0, 20};
    const double shr[] = {1, -4, 0, -1, 0, 0, -1, 1};
    test_check_values("left_shift edge", pn_left_shift(sx, sy), &n, 1, PN_INT32, shl, 0, 0);
    test_check_values("right_shift edge", pn_right_shift(sx, sy), &n, 1, PN_INT32, shr, 0, 0);
    /* bool shifts promote to uint8 */
    pn_array *bt = pn_array_from_data((bool[]){1, 1}, (int64_t[]){2}, 1, PN_BOOL);
    pn_array *sh = pn_left_shift(bt, bt);
    CHECK(sh && pn_array_dtype(sh) == PN_UINT8);
    test_check_values("bool shift", sh, (int64_t[]){2}, 1, PN_UINT8, (double[]){2, 2}, 0, 0);
    /* integer arithmetic wraps like the hardware */
    const int32_t big[] = {INT32_MAX, INT32_MIN, INT32_MIN, 65536, -3, 0, 1, 2};
    pn_array *bx = pn_array_from_data(big, &n, 1, PN_INT32);
    const double wadd[] = {INT32_MIN, INT32_MIN + 1.0, INT32_MIN + 1.0, 65537, -2, 1, 2, 3};
    const double wneg[] = {-(double)INT32_MAX, INT32_MIN, INT32_MIN, -65536, 3, 0, -1, -2};
    const double wsq[] = {1, 0, 0, 0, 9, 0, 1, 4};
    test_check_values("add wraps", pn_add(bx, pn_weak_int(1)), &n, 1, PN_INT32, wadd, 0, 0);
    test_check_values("negative wraps", pn_negative(bx), &n, 1, PN_INT32, wneg, 0, 0);
    test_check_values("square wraps", pn_square(bx), &n, 1, PN_INT32, wsq, 0, 0);
    /* integer power */
    const int32_t pa[] = {2, -2, 3, 1, -1, 2, 0, 10}, pb[] = {10, 3, 0, -5, -3, -1, 0, 9};
    const double pr[] = {1024, -8, 1, 1, -1, 0, 1, 1e9};
    test_check_values(
        "power int",
        pn_power(pn_array_from_data(pa, &n, 1, PN_INT32), pn_array_from_data(pb, &n, 1, PN_INT32)),
        &n, 1, PN_INT32, pr, 0, 0);
    pn_scope_pop();
}

TEST(complex64_ops)
{
    pn_scope_push();
    const int64_t n = 5;
    float _Complex av[5], bv[5];
    for (int i = 0; i < n; i++) {
        av[i] = (float)test_uniform(-2, 2) + (float)test_uniform(-2, 2) * I;
        bv[i] = (float)test_uniform(0.5, 2) + (float)test_uniform(-2, 2) * I;
    }
    pn_array *a = pn_array_from_data(av, &n, 1, PN_COMPLEX64);
    pn_array *b = pn_array_from_data(bv, &n, 1, PN_COMPLEX64);
    struct {
        const char *name;
        pn_array *y;
        int which;
    } cases[] = {
        {"add", pn_add(a, b), 0},
        {"subtract", pn_subtract(a, b), 1},
        {"multiply", pn_multiply(a, b), 2},
        {"divide", pn_divide(a, b), 3},
        {"exp", pn_exp(a), 4},
        {"log", pn_log(b), 5},
        {"sqrt", pn_sqrt(b), 6},
        {"sin", pn_sin(a), 7},
        {"conjugate", pn_conjugate(a), 8},
        {"square", pn_square(a), 9},
        {"negative", pn_negative(a), 10},
        {"power", pn_power(b, a), 11},
        {"tanh", pn_tanh(a), 12},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        float _Complex got[5];
        CHECK_OK(cases[c].y);
        if (!cases[c].y) continue;
        CHECK(pn_array_dtype(cases[c].y) == PN_COMPLEX64);
        if (pn_to_host(cases[c].y, got, sizeof got)) {
            CHECK_MSG(0, "%s: %s", cases[c].name, pn_last_error_message());
            continue;
        }
        for (int i = 0; i < n; i++) {
            double _Complex x = av[i], z = bv[i], r = 0;
            switch (cases[c].which) {
            case 0: r = x + z; break;
            case 1: r = x - z; break;
            case 2: r = x * z; break;
            case 3: r = x / z; break;
            case 4: r = cexp(x); break;
            case 5: r = clog(z); break;
            case 6: r = csqrt(z); break;
            case 7: r = csin(x); break;
            case 8: r = conj(x); break;
            case 9: r = x * x; break;
            case 10: r = -x; break;
            case 11: r = cpow(z, x); break;
            case 12: r = ctanh(x); break;
            }
            CHECK_MSG(cabs(got[i] - r) <= 1e-4 * (1 + cabs(r)),
                      "complex %s element %d: got %g%+gi, expected %g%+gi", cases[c].name, i,
                      crealf(got[i]), cimagf(got[i]), creal(r), cimag(r));
        }
    }
    /* abs, real and imag give float32 */
    double rabs[5], rre[5], rim[5];
    for (int i = 0; i < n; i++) {
        rabs[i] = cabs((double _Complex)av[i]);
        rre[i] = crealf(av[i]);
        rim[i] = cimagf(av[i]);
    }
    test_check_values("abs complex", pn_abs(a), &n, 1, PN_FLOAT32, rabs, 1e-6, 1e-6);
    test_check_values("real complex", pn_real(a), &n, 1, PN_FLOAT32, rre, 0, 0);
    test_check_values("imag complex", pn_imag(a), &n, 1, PN_FLOAT32, rim, 0, 0);
    double req[5];
    for (int i = 0; i < n; i++)
        req[i] = i % 2 == 0;
    float _Complex cv[5];
    for (int i = 0; i < n; i++)
        cv[i] = i % 2 == 0 ? av[i] : av[i] + 1;
    test_check_values("equal complex", pn_equal(a, pn_array_from_data(cv, &n, 1, PN_COMPLEX64)), &n,
                      1, PN_BOOL, req, 0, 0);
    /* a float array meeting a complex one becomes complex */
    pn_array *m = pn_add(pn_ones(&n, 1, PN_FLOAT32), a);
    CHECK(m && pn_array_dtype(m) == PN_COMPLEX64);
    /* ops MLX does not define on complex64 */
    CHECK_ERR(pn_floor(a), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_maximum(a, b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_less(a, b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_erf(a), PN_ERR_INVALID_ARGUMENT);
    pn_array *dm[2];
    pn_clear_error();
    CHECK(pn_divmod(a, b, dm) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

TEST(every_op_every_dtype_evaluates_or_is_rejected)
{
    /* no dtype may reach a kernel that does not exist: an op either builds and evaluates, or
     * fails at construction with an invalid-argument error */
    pn_scope_push();
    const int64_t shape[2] = {2, 3};
    int built = 0, rejected = 0;
    for (int t = 0; t < PN_NUM_DTYPES; t++) {
        pn_array *x = pn_ones(shape, 2, (pn_dtype)t);
        for (int c = 0; c < NUNARY + NBINARY; c++) {
            pn_clear_error();
            const char *name = c < NUNARY ? UNARY[c].name : BINARY[c - NUNARY].name;
            pn_array *y = c < NUNARY ? UNARY[c].fn(x) : BINARY[c - NUNARY].fn(x, x);
            if (!y) {
                CHECK_MSG(pn_last_error() == PN_ERR_INVALID_ARGUMENT, "%s(%s): error %d: %s", name,
                          pn_dtype_name((pn_dtype)t), (int)pn_last_error(),
                          pn_last_error_message());
                rejected++;
                continue;
            }
            CHECK_MSG(pn_eval(&y, 1) == 0, "%s(%s) failed at eval: %s", name,
                      pn_dtype_name((pn_dtype)t), pn_last_error_message());
            built++;
        }
        pn_array *r = pn_round(x, 2), *z = pn_nan_to_num(x, 0, NULL, NULL);
        pn_array *w = pn_where(pn_ones(shape, 2, PN_BOOL), x, x),
                 *ic = pn_isclose(x, x, 1e-5, 1e-8, true);
        pn_array *all[4] = {r, z, w, ic};
        for (int k = 0; k < 4; k++)
            if (all[k])
                CHECK_MSG(pn_eval(&all[k], 1) == 0, "extra op %d (%s): %s", k,
                          pn_dtype_name((pn_dtype)t), pn_last_error_message());
        pn_clear_error();
    }
    CHECK(built > rejected);
    pn_scope_pop();
}

TEST(logaddexp_extremes)
{
    pn_scope_push();
    const int64_t n = 6;
    const double a[] = {1000, -1000, INFINITY, -INFINITY, -INFINITY, NAN};
    const double b[] = {1000, -1000, 1, -INFINITY, 3, 1};
    const double r[] = {1000 + M_LN2, -1000 + M_LN2, INFINITY, -INFINITY, 3, NAN};
    for (int k = 0; k < 2; k++) {
        pn_dtype t = k ? PN_FLOAT32 : PN_FLOAT64;
        pn_array *x = pn_astype(pn_array_from_data(a, &n, 1, PN_FLOAT64), t);
        pn_array *y = pn_astype(pn_array_from_data(b, &n, 1, PN_FLOAT64), t);
        test_check_values("logaddexp extremes", pn_logaddexp(x, y), &n, 1, t, r, 1e-6, 0);
        test_check_values("logaddexp swapped", pn_logaddexp(y, x), &n, 1, t, r, 1e-6, 0);
    }
    pn_scope_pop();
}

/* ───────────────────────────── where, clip, isclose ───────────────────────────── */

TEST(where_broadcast_and_dtypes)
{
    pn_scope_push();
    static const int64_t sc[3] = {3, 1, 5}, sx[2] = {4, 5}, sy[1] = {5}, so[3] = {3, 4, 5};
    const pn_dtype dts[] = {PN_FLOAT32, PN_FLOAT16, PN_INT32, PN_UINT8, PN_BOOL, PN_FLOAT64};
    for (int k = 0; k < 6; k++) {
        pn_array *c = test_random_array(sc, 3, PN_BOOL, 0, 1);
        pn_array *x = test_random_array(sx, 2, dts[k], 0, 50);
        pn_array *y = test_random_array(sy, 1, dts[k], 0, 50);
        double *cv = test_to_f64(c), *xv = test_to_f64(x), *yv = test_to_f64(y), ref[60];
        for (int i = 0; i < 60; i++)
            ref[i] = cv[bcast_index(i, so, 3, sc, 3)] ? xv[bcast_index(i, so, 3, sx, 2)]
                                                      : yv[bcast_index(i, so, 3, sy, 1)];
        test_check_values("where", pn_where(c, x, y), so, 3, dts[k], ref, 0, 0);
        free(cv);
        free(xv);
        free(yv);
    }
    /* a non-bool condition is cast; x and y promote (weak scalars adapt) */
    pn_array *ci = pn_array_from_data((int32_t[]){0, 2, -1}, (int64_t[]){3}, 1, PN_INT32);
    pn_array *xf = pn_array_from_data((float[]){1, 2, 3}, (int64_t[]){3}, 1, PN_FLOAT32);
    test_check_values("where int cond", pn_where(ci, xf, pn_weak_int(9)), (int64_t[]){3}, 1,
                      PN_FLOAT32, (double[]){9, 2, 3}, 0, 0);
    pn_array *xh = pn_astype(xf, PN_FLOAT16);
    test_check_values(
        "where promote",
        pn_where(ci, xh, pn_array_from_data((int32_t[]){5, 5, 5}, (int64_t[]){3}, 1, PN_INT32)),
        (int64_t[]){3}, 1, PN_FLOAT16, (double[]){5, 2, 3}, 0, 0);
    /* 0-d and empty */
    test_check_values("where 0-d",
                      pn_where(pn_weak_bool(true), pn_weak_float(1.5), pn_weak_float(2)), NULL, 0,
                      PN_FLOAT32, (double[]){1.5}, 0, 0);
    test_check_values(
        "where empty",
        pn_where(pn_zeros(SHAPE_EMPTY, 2, PN_BOOL), pn_weak_float(1), pn_weak_float(2)),
        SHAPE_EMPTY, 2, PN_FLOAT32, NULL, 0, 0);
    CHECK_ERR(pn_where(test_random_array(sx, 2, PN_BOOL, 0, 1), xf, xf), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

TEST(clip_bounds)
{
    pn_scope_push();
    const int64_t n = 9;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -3, 3);
    double *xv = test_to_f64(x), r1[9], r2[9], r3[9];
    for (int i = 0; i < n; i++) {
        r1[i] = xv[i] < -1 ? -1 : xv[i] > 1 ? 1 : xv[i];
        r2[i] = xv[i] < 0.5 ? 0.5 : xv[i];
        r3[i] = xv[i] > 0.25 ? 0.25 : xv[i];
    }
    test_check_values("clip both", pn_clip(x, pn_weak_float(-1), pn_weak_float(1)), &n, 1,
                      PN_FLOAT32, r1, 0, 0);
    test_check_values("clip min", pn_clip(x, pn_weak_float(0.5), NULL), &n, 1, PN_FLOAT32, r2, 0,
                      0);
    test_check_values("clip max", pn_clip(x, NULL, pn_weak_float(0.25)), &n, 1, PN_FLOAT32, r3, 0,
                      0);
    /* array bounds broadcast; int data with float bounds promotes */
    pn_array *xi = pn_array_from_data((int32_t[]){-5, 0, 5}, (int64_t[]){3}, 1, PN_INT32);
    pn_array *lo = pn_array_from_data((float[]){-1, 0.5, -1}, (int64_t[]){3}, 1, PN_FLOAT32);
    test_check_values("clip promote", pn_clip(xi, lo, pn_weak_int(2)), (int64_t[]){3}, 1,
                      PN_FLOAT32, (double[]){-1, 0.5, 2}, 0, 0);
    CHECK_ERR(pn_clip(x, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    free(xv);
    pn_scope_pop();
}

TEST(isclose_allclose_array_equal)
{
    pn_scope_push();
    const int64_t n = 8;
    const double a[] = {1.0, 1.0, 1.0, INFINITY, INFINITY, NAN, 0.0, -INFINITY};
    const double b[] = {1.0 + 1e-6, 1.1, 1.0, INFINITY, -INFINITY, NAN, 1e-9, -INFINITY};
    pn_array *x = pn_array_from_data(a, &n, 1, PN_FLOAT64),
             *y = pn_array_from_data(b, &n, 1, PN_FLOAT64);
    test_check_values("isclose", pn_isclose(x, y, 1e-5, 1e-8, false), &n, 1, PN_BOOL,
                      (double[]){1, 0, 1, 1, 0, 0, 1, 1}, 0, 0);
    test_check_values("isclose equal_nan", pn_isclose(x, y, 1e-5, 1e-8, true), &n, 1, PN_BOOL,
                      (double[]){1, 0, 1, 1, 0, 1, 1, 1}, 0, 0);
    test_check_values("isclose tight", pn_isclose(x, y, 0, 0, false), &n, 1, PN_BOOL,
                      (double[]){0, 0, 1, 1, 0, 0, 0, 1}, 0, 0);
    pn_array *xa = test_random_array(SHAPE_3D, 3, PN_FLOAT32, -1, 1);
    pn_array *xb = pn_add(xa, pn_weak_float(1e-7));
    CHECK(pn_item(pn_allclose(xa, xb, 1e-5, 1e-6, false)) == 1);
    CHECK(pn_item(pn_allclose(xa, pn_add(xa, pn_weak_float(0.1)), 1e-5, 1e-6, false)) == 0);
    pn_array *ac = pn_allclose(xa, xb, 1e-5, 1e-6, false);
    CHECK(ac && pn_ndim(ac) == 0 && pn_array_dtype(ac) == PN_BOOL);
    /* array_equal: shapes must match; dtypes may differ; NaN only with equal_nan */
    pn_array *i3 = pn_array_from_data((int32_t[]){1, 2, 3}, (int64_t[]){3}, 1, PN_INT32);
    pn_array *f3 = pn_array_from_data((float[]){1, 2, 3}, (int64_t[]){3}, 1, PN_FLOAT32);
    CHECK(pn_item(pn_array_equal(i3, f3, false)) == 1);
    CHECK(pn_item(pn_array_equal(i3, pn_reshape(f3, (int64_t[]){1, 3}, 2), false)) == 0);
    CHECK(pn_item(pn_array_equal(i3, pn_add(i3, pn_weak_int(1)), false)) == 0);
    CHECK(pn_item(pn_array_equal(x, x, false)) == 0);
    CHECK(pn_item(pn_array_equal(x, x, true)) == 1);
    /* equal itself never treats NaN as equal */
    test_check_values("equal nan", pn_equal(x, x), &n, 1, PN_BOOL,
                      (double[]){1, 1, 1, 1, 1, 0, 1, 1}, 0, 0);
    pn_scope_pop();
}

/* ───────────────────────────── promotion and errors ───────────────────────────── */

TEST(weak_scalar_promotion)
{
    pn_scope_push();
    const int64_t n = 4;
    pn_array *i32 = pn_array_from_data((int32_t[]){1, 2, 3, 4}, &n, 1, PN_INT32);
    pn_array *r = pn_add(i32, pn_weak_float(0.5));
    CHECK(r && pn_array_dtype(r) == PN_FLOAT32);
    test_check_values("int32 + 0.5", r, &n, 1, PN_FLOAT32, (double[]){1.5, 2.5, 3.5, 4.5}, 0, 0);
    pn_array *f16 = pn_astype(i32, PN_FLOAT16);
    r = pn_multiply(f16, pn_weak_float(2));
    CHECK(r && pn_array_dtype(r) == PN_FLOAT16);
    test_check_values("f16 * 2", r, &n, 1, PN_FLOAT16, (double[]){2, 4, 6, 8}, 0, 0);
    pn_array *u8 = pn_array_from_data((uint8_t[]){0, 1, 254, 255}, &n, 1, PN_UINT8);
    r = pn_add(u8, pn_weak_int(1));
    CHECK(r && pn_array_dtype(r) == PN_UINT8);
    test_check_values("u8 + 1 wraps", r, &n, 1, PN_UINT8, (double[]){1, 2, 255, 0}, 0, 0);
    r = pn_add(pn_weak_int(1), u8); /* the weak side may come first */
    CHECK(r && pn_array_dtype(r) == PN_UINT8);
    /* strong scalars promote like arrays */
    r = pn_add(u8, pn_scalar_int(1, PN_INT32));
    CHECK(r && pn_array_dtype(r) == PN_INT32);
    r = pn_add(i32, pn_scalar(0.5, PN_FLOAT16));
    CHECK(r && pn_array_dtype(r) == PN_FLOAT16);
    /* two weak scalars: float32 / int32 as MLX */
    r = pn_add(pn_weak_float(1), pn_weak_int(2));
    CHECK(r && pn_array_dtype(r) == PN_FLOAT32 && pn_item(r) == 3);
    r = pn_divide(i32, pn_weak_int(2)); /* divide of ints is float32 */
    test_check_values("int / 2", r, &n, 1, PN_FLOAT32, (double[]){0.5, 1, 1.5, 2}, 0, 0);
    r = pn_floor_divide(i32, pn_weak_int(2)); /* floor_divide keeps the integer type */
    test_check_values("int // 2", r, &n, 1, PN_INT32, (double[]){0, 1, 1, 2}, 0, 0);
    r = pn_sqrt(i32); /* math on integers gives float32 */
    CHECK(r && pn_array_dtype(r) == PN_FLOAT32);
    r = pn_power(i32, pn_weak_int(2)); /* power of ints stays int */
    test_check_values("int ** 2", r, &n, 1, PN_INT32, (double[]){1, 4, 9, 16}, 0, 0);
    r = pn_add(pn_array_from_data((bool[]){1, 0, 1, 0}, &n, 1, PN_BOOL), pn_weak_int(1));
    CHECK(r && pn_array_dtype(r) == PN_INT32);
    pn_scope_pop();
}

TEST(error_cases)
{
    pn_scope_push();
    pn_array *a = pn_zeros((int64_t[]){2, 3}, 2, PN_FLOAT32);
    pn_array *b = pn_zeros((int64_t[]){4}, 1, PN_FLOAT32);
    CHECK_ERR(pn_add(a, b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_equal(a, b), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_isclose(a, b, 1e-5, 1e-8, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_bitwise_and(a, a), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_bitwise_xor(pn_zeros((int64_t[]){2}, 1, PN_INT32), pn_weak_float(1)),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_left_shift(a, pn_weak_int(1)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_negative(pn_zeros((int64_t[]){2}, 1, PN_BOOL)), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_where(a, a, b), PN_ERR_INVALID_ARGUMENT);
    pn_array *dm[2] = {a, a};
    pn_clear_error();
    CHECK(pn_divmod(a, b, dm) == -1 && !dm[0] && !dm[1]);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    /* messages name the op and the shapes */
    pn_clear_error();
    CHECK(!pn_multiply(a, b));
    CHECK_MSG(strstr(pn_last_error_message(), "(2,3)") && strstr(pn_last_error_message(), "(4)"),
              "message: %s", pn_last_error_message());
    /* a NULL input returns NULL and keeps the first error */
    pn_clear_error();
    pn_set_error(PN_ERR_IO, "first failure");
    CHECK(!pn_exp(pn_add(NULL, a)));
    CHECK(!pn_where(NULL, a, a) && !pn_clip(NULL, a, a) && !pn_isclose(a, NULL, 0, 0, false));
    CHECK(!pn_clip(a, NULL, NULL)); /* a failed bound is not "no bound" */
    CHECK(pn_last_error() == PN_ERR_IO && strstr(pn_last_error_message(), "first failure"));
    pn_clear_error();
    /* a NULL with no error recorded yet still reports one */
    CHECK(!pn_sqrt(NULL) && pn_last_error() != PN_OK);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

typedef struct grad_case {
    const char *name;
    unary_fn fn;
    double lo, hi;
} grad_case;

static pn_array *call_unary(void *ctx, pn_array *const *in)
{
    return ((const grad_case *)ctx)->fn(in[0]);
}

typedef struct grad2_case {
    const char *name;
    binary_fn fn;
    double alo, ahi, blo, bhi;
} grad2_case;

static pn_array *call_binary(void *ctx, pn_array *const *in)
{
    return ((const grad2_case *)ctx)->fn(in[0], in[1]);
}

static pn_array *nan_to_num_fn(pn_array *a) { return pn_nan_to_num(a, 0, NULL, NULL); }
static pn_array *round_fn(pn_array *a) { return pn_multiply(pn_round(a, 1), a); }

TEST(gradcheck_unary)
{
    pn_scope_push();
    static const grad_case cases[] = {
        {"abs", pn_abs, 0.2, 2},
        {"negative", pn_negative, -2, 2},
        {"sqrt", pn_sqrt, 0.5, 3},
        {"rsqrt", pn_rsqrt, 0.5, 3},
        {"square", pn_square, -2, 2},
        {"reciprocal", pn_reciprocal, 0.5, 3},
        {"exp", pn_exp, -2, 2},
        {"expm1", pn_expm1, -1, 1},
        {"log", pn_log, 0.5, 3},
        {"log1p", pn_log1p, -0.5, 2},
        {"log2", pn_log2, 0.5, 3},
        {"log10", pn_log10, 0.5, 3},
        {"sin", pn_sin, -3, 3},
        {"cos", pn_cos, -3, 3},
        {"tan", pn_tan, -1, 1},
        {"arcsin", pn_arcsin, -0.8, 0.8},
        {"arccos", pn_arccos, -0.8, 0.8},
        {"arctan", pn_arctan, -3, 3},
        {"sinh", pn_sinh, -2, 2},
        {"cosh", pn_cosh, -2, 2},
        {"tanh", pn_tanh, -2, 2},
        {"arcsinh", pn_arcsinh, -2, 2},
        {"arccosh", pn_arccosh, 1.5, 3},
        {"arctanh", pn_arctanh, -0.8, 0.8},
        {"sigmoid", pn_sigmoid, -3, 3},
        {"erf", pn_erf, -2, 2},
        {"erfinv", pn_erfinv, -0.8, 0.8},
        {"degrees", pn_degrees, -2, 2},
        {"radians", pn_radians, -2, 2},
        {"real", pn_real, -2, 2},
        {"conjugate", pn_conjugate, -2, 2},
        {"nan_to_num", nan_to_num_fn, -2, 2},
        {"round_times_x", round_fn, 0.1, 2},
    };
    const int64_t shape[2] = {3, 4};
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        pn_array *x = test_random_array(shape, 2, PN_FLOAT64, cases[c].lo, cases[c].hi);
        CHECK_MSG(test_gradcheck(cases[c].name, call_unary, (void *)&cases[c], 1, &x, 1e-5),
                  "gradcheck %s", cases[c].name);
    }
    pn_scope_pop();
}

TEST(gradcheck_zero_gradients)
{
    pn_scope_push();
    /* piecewise-constant ops have zero derivatives (away from their jumps) */
    static const grad_case cases[] = {
        {"sign", pn_sign, 0.2, 2},
        {"floor", pn_floor, 0.1, 0.9},
        {"ceil", pn_ceil, 0.1, 0.9},
        {"imag", pn_imag, -1, 1}, /* of real input: zeros */
    };
    const int64_t shape[1] = {5};
    for (int c = 0; c < 4; c++) {
        pn_array *x = test_random_array(shape, 1, PN_FLOAT64, cases[c].lo, cases[c].hi);
        CHECK_MSG(test_gradcheck(cases[c].name, call_unary, (void *)&cases[c], 1, &x, 1e-5),
                  "gradcheck %s", cases[c].name);
    }
    pn_scope_pop();
}

/* sum(x * stop_gradient(x)): the gradient is x, not 2x. */
static int stopgrad_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_multiply(in[0], pn_stop_gradient(in[0])), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(stop_gradient_blocks_derivatives)
{
    pn_scope_push();
    const int64_t n = 6;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT64, -2, 2);
    pn_closure *f = pn_closure_new(stopgrad_fn, NULL, NULL);
    pn_closure *g = pn_grad(f, NULL, 0);
    pn_array *gx[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_closure_call(g, 1, &x, &nout, gx) == 0 && nout == 1);
    double *xv = test_to_f64(x);
    if (nout == 1)
        test_check_values("grad x*stop_gradient(x)", gx[0], &n, 1, PN_FLOAT64, xv, 1e-12, 1e-12);
    /* forward mode: the tangent of stop_gradient(x) is zero, so that of the product is t*x */
    pn_array *t = test_random_array(&n, 1, PN_FLOAT64, -1, 1), *o[PN_MAX_OUTPUTS],
             *jv[PN_MAX_OUTPUTS];
    CHECK(pn_jvp(f, 1, &x, &t, &nout, o, jv) == 0 && nout == 1);
    double *tv = test_to_f64(t), dot = 0;
    for (int i = 0; i < n; i++)
        dot += tv[i] * xv[i];
    if (nout == 1)
        CHECK_MSG(fabs(pn_item(jv[0]) - dot) < 1e-12, "jvp %g vs %g", pn_item(jv[0]), dot);
    pn_closure_release(g);
    pn_closure_release(f);
    free(xv);
    free(tv);
    pn_scope_pop();
}

TEST(gradcheck_binary)
{
    pn_scope_push();
    static const grad2_case cases[] = {
        {"add", pn_add, -2, 2, -2, 2},
        {"subtract", pn_subtract, -2, 2, -2, 2},
        {"multiply", pn_multiply, -2, 2, -2, 2},
        {"divide", pn_divide, -2, 2, 0.5, 2},
        {"power", pn_power, 0.5, 2, -1.5, 1.5},
        {"maximum", pn_maximum, -2, 2, -2, 2},
        {"minimum", pn_minimum, -2, 2, -2, 2},
        {"arctan2", pn_arctan2, -2, 2, 0.5, 2},
        {"logaddexp", pn_logaddexp, -3, 3, -3, 3},
        {"remainder", pn_remainder, 0.1, 0.9, 1.1, 1.9},
        {"floor_divide", pn_floor_divide, 0.1, 0.9, 1.1, 1.9}, /* zero away from jumps */
    };
    const int64_t sa[2] = {3, 4}, sb[1] = {4};
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        /* same shapes, then b broadcast along rows (the vjp must sum it back) */
        for (int bc = 0; bc < 2; bc++) {
            pn_array *in[2] = {test_random_array(sa, 2, PN_FLOAT64, cases[c].alo, cases[c].ahi),
                               test_random_array(bc ? sb : sa, bc ? 1 : 2, PN_FLOAT64, cases[c].blo,
                                                 cases[c].bhi)};
            CHECK_MSG(test_gradcheck(cases[c].name, call_binary, (void *)&cases[c], 2, in, 1e-5),
                      "gradcheck %s (broadcast %d)", cases[c].name, bc);
        }
    }
    pn_scope_pop();
}

static pn_array *where_fn(void *ctx, pn_array *const *in)
{
    return pn_where((pn_array *)ctx, in[0], in[1]);
}
static pn_array *clip_fn(void *ctx, pn_array *const *in) { return pn_clip(in[0], in[1], in[2]); }
static pn_array *divmod_fn(void *ctx, pn_array *const *in)
{
    pn_array *o[2];
    if (pn_divmod(in[0], in[1], o)) return NULL;
    return pn_add(pn_multiply(o[1], o[1]), o[0]); /* uses both outputs */
}
static pn_array *chain_fn(void *ctx, pn_array *const *in)
{ /* a composite: grad of a longer expression */
    return pn_tanh(pn_multiply(pn_exp(pn_negative(pn_square(in[0]))), pn_sin(in[1])));
}

TEST(gradcheck_where_clip_divmod)
{
    pn_scope_push();
    const int64_t s[2] = {3, 4}, sr[1] = {4};
    pn_array *cond = test_random_array(s, 2, PN_BOOL, 0, 1);
    pn_array *in[3] = {test_random_array(s, 2, PN_FLOAT64, -2, 2),
                       test_random_array(sr, 1, PN_FLOAT64, -2, 2), NULL};
    CHECK(test_gradcheck("where", where_fn, cond, 2, in, 1e-5));
    pn_array *cin[3] = {test_random_array(s, 2, PN_FLOAT64, -2, 2),
                        test_random_array(sr, 1, PN_FLOAT64, -1.5, -0.5),
                        test_random_array(sr, 1, PN_FLOAT64, 0.5, 1.5)};
    CHECK(test_gradcheck("clip", clip_fn, NULL, 3, cin, 1e-5));
    pn_array *din[2] = {test_random_array(s, 2, PN_FLOAT64, 0.1, 0.9),
                        test_random_array(s, 2, PN_FLOAT64, 1.1, 1.9)};
    CHECK(test_gradcheck("divmod", divmod_fn, NULL, 2, din, 1e-5));
    CHECK(test_gradcheck("chain", chain_fn, NULL, 2, in, 1e-5));
    pn_scope_pop();
}

/* Gradient of gradient: d/dx of (d/dx sin(x)) = -sin(x). */
static int grad_sin_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = pn_sum(pn_sin(in[0]), NULL, 0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(grad_of_grad)
{
    pn_scope_push();
    const int64_t n = 6;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT64, -2, 2);
    pn_closure *f = pn_closure_new(grad_sin_fn, NULL, NULL);
    pn_closure *g = pn_grad(f, NULL, 0);
    pn_array *gx[PN_MAX_OUTPUTS];
    int nout = 0;
    CHECK(pn_closure_call(g, 1, &x, &nout, gx) == 0 && nout == 1);
    double *xv = test_to_f64(x), ref[6];
    for (int i = 0; i < n; i++)
        ref[i] = cos(xv[i]);
    if (nout == 1) test_check_values("grad sin", gx[0], &n, 1, PN_FLOAT64, ref, 1e-12, 1e-12);
    pn_closure_release(g);
    pn_closure_release(f);
    free(xv);
    pn_scope_pop();
}

/* ───────────────────────────── vmap ───────────────────────────── */

static int vmap_body(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{ /* x is (4,), y is (3, 4) */
    out[0] =
        pn_where(pn_greater(in[0], pn_weak_float(0)), pn_multiply(in[0], in[1]), pn_exp(in[0]));
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(vmap_broadcasts_like_the_unbatched_op)
{
    pn_scope_push();
    const int64_t sx[2] = {4, 5}, sy[2] = {3, 4};
    pn_array *x = test_random_array(sx, 2, PN_FLOAT32, -2, 2); /* mapped along axis 1 */
    pn_array *y = test_random_array(sy, 2, PN_FLOAT32, -2, 2); /* not mapped */
    pn_closure *f = pn_closure_new(vmap_body, NULL, NULL);
    pn_closure *vf = pn_vmap(f, (int[]){1, -1}, 2, NULL, 1);
    pn_array *out[PN_MAX_OUTPUTS];
    int nout = 0;
    pn_array *args[2] = {x, y};
    CHECK(pn_closure_call(vf, 2, args, &nout, out) == 0 && nout == 1);
    double *xv = test_to_f64(x), *yv = test_to_f64(y), ref[5 * 3 * 4];
    for (int b = 0; b < 5; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) {
                double xj = xv[j * 5 + b];
                ref[(b * 3 + i) * 4 + j] = xj > 0 ? xj * yv[i * 4 + j] : exp(xj);
            }
    if (nout == 1)
        test_check_values("vmap", out[0], (int64_t[]){5, 3, 4}, 3, PN_FLOAT32, ref, 1e-5, 1e-6);
    pn_closure_release(vf);
    pn_closure_release(f);
    free(xv);
    free(yv);
    pn_scope_pop();
}

/* ───────────────────────────── memory ───────────────────────────── */

TEST(long_chain_memory_stays_bounded)
{
    pn_scope_push();
    int64_t n = test_quick() ? 1 << 16 : 1 << 20;
    size_t bytes = (size_t)n * sizeof(float);
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -1, 1);
    pn_eval(&x, 1);
    pn_reset_peak_memory();
    size_t base = pn_get_active_memory();
    /* 100 unary ops; each intermediate handle is released once the next op holds it */
    pn_array *y = x;
    for (int i = 0; i < 100; i++) {
        pn_array *z = i % 3 == 0   ? pn_sin(y)
                      : i % 3 == 1 ? pn_tanh(y)
                                   : pn_multiply(y, pn_weak_float(1.01));
        if (y != x) pn_release(y);
        y = z;
    }
    CHECK(pn_eval(&y, 1) == 0);
    size_t peak = pn_get_peak_memory();
    /* on the GPU, x's device copy (made at its first use there) adds one array */
    size_t moved = pn_default_device().type == PN_GPU ? bytes : 0;
    CHECK_MSG(peak <= base + moved + 3 * bytes / 2, "peak %zu bytes above %zu for arrays of %zu bytes",
              peak - base, base, bytes);
    printf("  chain of 100 ops: peak %.2fx one array above the input%s\n",
           (double)(peak - base) / bytes, moved ? " and its device copy" : "");
    /* the values are those of the float64 chain (within float32 rounding) */
    double *xv = test_to_f64(x), *yv = test_to_f64(y);
    for (int64_t i = 0; i < n && yv && xv; i += n / 7) {
        double v = xv[i];
        for (int k = 0; k < 100; k++)
            v = k % 3 == 0 ? sin(v) : k % 3 == 1 ? tanh(v) : v * 1.01;
        CHECK_MSG(fabs(v - yv[i]) < 1e-4, "chain element %lld: %g vs %g", (long long)i, yv[i], v);
    }
    free(xv);
    free(yv);
    pn_scope_pop();
}
