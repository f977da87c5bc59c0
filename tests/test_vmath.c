/* test_vmath.c — accuracy of the vectorized float32 math (src/backend/cpu/vmath.h) against
 * float64 libm: a sweep over every 256th float bit pattern (2^24 samples; every 4096th under
 * PONTE_TEST_QUICK) with the maximum ulp error printed and bounded, exact special values, and
 * the elementwise ops that use it (f32 dense and strided, f16, bf16) against libm. */
#include "harness.h"

#include "backend/cpu/vmath.h"

#include <float.h>
#include <string.h>

/* ───────────────────────────── the functions under test ───────────────────────────── */

static double sigmoid_ref(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef struct vm_case {
    const char *name;
    pnV_array_fn fn;         /* the array function under test */
    double (*ref)(double x); /* float64 reference */
    double max_ulp;          /* the bound */
} vm_case;

static const vm_case vm_cases[] = {
    {"exp", pnV_exp_f32, exp, 2},         {"log", pnV_log_f32, log, 2},
    {"sin", pnV_sin_f32, sin, 2},         {"cos", pnV_cos_f32, cos, 2},
    {"expm1", pnV_expm1_f32, expm1, 4},   {"log1p", pnV_log1p_f32, log1p, 4},
    {"log2", pnV_log2_f32, log2, 4},      {"tanh", pnV_tanh_f32, tanh, 4},
    {"sigmoid", pnV_sigmoid_f32, sigmoid_ref, 4}, {"erf", pnV_erf_f32, erf, 4},
};
#define VM_NCASES ((int)(sizeof vm_cases / sizeof vm_cases[0]))

static float f_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Error of y in units of the last place of the correctly rounded reference; 0 when both are
 * the same NaN/infinity, INFINITY when one is special and the other not. */
static double ulp_error(float y, double ref)
{
    float rf = (float)ref;
    if (isnan(ref) || isnan(y)) return isnan(ref) && isnan(y) ? 0 : INFINITY;
    if (isinf(rf) || isinf(y)) return y == rf ? 0 : INFINITY;
    int e;
    frexpf(rf == 0 ? FLT_MIN : rf, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)y - ref) / ulp;
}

/* ───────────────────────────── the sweep ───────────────────────────── */

TEST(vmath_accuracy_sweep)
{
    pn_scope_push();
    const uint32_t stride = test_quick() ? 4096 : 256;
    const int64_t n = (int64_t)(0x100000000ull / stride);
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    CHECK(x && y);
    if (!x || !y) goto done;
    /* every stride-th bit pattern, offset so that the low mantissa bits vary too */
    for (int64_t i = 0; i < n; i++) x[i] = f_of((uint32_t)i * stride + (uint32_t)(i % stride));
    for (int c = 0; c < VM_NCASES; c++) {
        const vm_case *vc = &vm_cases[c];
        vc->fn(x, y, n);
        double worst = 0;
        float worst_x = 0;
        for (int64_t i = 0; i < n; i++) {
            double err = ulp_error(y[i], vc->ref((double)x[i]));
            if (err > worst) {
                worst = err;
                worst_x = x[i];
            }
        }
        printf("  %-8s max error %.3f ulp (at %a) over %lld floats\n", vc->name, worst,
               (double)worst_x, (long long)n);
        CHECK_MSG(worst <= vc->max_ulp, "%s: %.3f ulp at x = %a (%.9g), bound %.0f", vc->name,
                  worst, (double)worst_x, (double)worst_x, vc->max_ulp);
    }
done:
    free(x);
    free(y);
    pn_scope_pop();
}

/* A denser sweep of the ranges where each function does its work: every 61st bit pattern
 * in [2^-30, 128] (5 million) and its negative. */
TEST(vmath_accuracy_core_ranges)
{
    pn_scope_push();
    const uint32_t lo = 0x30800000u /* 2^-30 */, hi = 0x43000000u /* 128 */;
    const uint32_t step = test_quick() ? 997 : 61;
    const int64_t half = (hi - lo) / step;
    float *x = malloc((size_t)(2 * half) * sizeof(float)), *y = malloc((size_t)(2 * half) * sizeof(float));
    CHECK(x && y);
    if (!x || !y) goto done;
    for (int64_t i = 0; i < half; i++) {
        x[2 * i] = f_of(lo + (uint32_t)i * step);
        x[2 * i + 1] = -x[2 * i];
    }
    for (int c = 0; c < VM_NCASES; c++) {
        const vm_case *vc = &vm_cases[c];
        vc->fn(x, y, 2 * half);
        double worst = 0;
        float worst_x = 0;
        for (int64_t i = 0; i < 2 * half; i++) {
            double err = ulp_error(y[i], vc->ref((double)x[i]));
            if (err > worst) worst = err, worst_x = x[i];
        }
        printf("  %-8s max error %.3f ulp in [2^-30, 128] (at %a)\n", vc->name, worst,
               (double)worst_x);
        CHECK_MSG(worst <= vc->max_ulp, "%s: %.3f ulp at x = %a, bound %.0f", vc->name, worst,
                  (double)worst_x, vc->max_ulp);
    }
done:
    free(x);
    free(y);
    pn_scope_pop();
}

/* ───────────────────────────── special values ───────────────────────────── */

/* Exact results, signs of zeros included. */
TEST(vmath_special_values)
{
    pn_scope_push();
    const float inf = INFINITY, nan = NAN;
    const struct {
        int c; /* index in vm_cases */
        float x, want;
    } sv[] = {
        {0, 0.0f, 1.0f},      {0, -0.0f, 1.0f},     {0, inf, inf},         {0, -inf, 0.0f},
        {0, 88.7229f, inf},   {0, 89.5f, inf},      {0, -104.0f, 0.0f},    {0, -1e30f, 0.0f},
        {0, 1e30f, inf},      {1, 0.0f, -inf},      {1, -0.0f, -inf},      {1, -1.0f, nan},
        {1, inf, inf},        {1, -inf, nan},       {1, 1.0f, 0.0f},       {1, 0x1p-149f, -103.2789f},
        {2, -0.0f, -0.0f},    {2, 0.0f, 0.0f},      {2, inf, nan},         {2, -inf, nan},
        {2, 0x1p-149f, 0x1p-149f}, {3, inf, nan},   {3, 0.0f, 1.0f},       {3, -0.0f, 1.0f},
        {4, -0.0f, -0.0f},    {4, 0.0f, 0.0f},      {4, inf, inf},         {4, -inf, -1.0f},
        {4, -20.0f, -1.0f},   {4, 89.0f, inf},      {4, 0x1p-140f, 0x1p-140f}, {5, -0.0f, -0.0f},
        {5, -1.0f, -inf},     {5, -2.0f, nan},      {5, inf, inf},         {5, 0x1p-140f, 0x1p-140f},
        {6, 1.0f, 0.0f},      {6, 1024.0f, 10.0f},  {6, 0x1p-149f, -149.0f}, {6, 0.0f, -inf},
        {6, -3.0f, nan},      {7, -0.0f, -0.0f},    {7, inf, 1.0f},        {7, -inf, -1.0f},
        {7, 20.0f, 1.0f},     {7, 0x1p-149f, 0x1p-149f}, {8, inf, 1.0f},   {8, -inf, 0.0f},
        {8, 0.0f, 0.5f},      {8, 200.0f, 1.0f},    {9, -0.0f, -0.0f},     {9, inf, 1.0f},
        {9, -inf, -1.0f},     {9, 5.0f, 1.0f},      {9, 0x1p-149f, 0x1p-149f},
    };
    for (size_t i = 0; i < sizeof sv / sizeof sv[0]; i++) {
        float y;
        vm_cases[sv[i].c].fn(&sv[i].x, &y, 1);
        int ok = isnan(sv[i].want) ? isnan(y)
                 : sv[i].c == 1 && sv[i].x == 0x1p-149f
                     ? fabsf(y - sv[i].want) < 1e-3f /* log of the smallest subnormal */
                     : y == sv[i].want && signbit(y) == signbit(sv[i].want);
        CHECK_MSG(ok, "%s(%a) = %a, expected %a", vm_cases[sv[i].c].name, (double)sv[i].x,
                  (double)y, (double)sv[i].want);
    }
    /* NaN in, NaN out, for every function */
    for (int c = 0; c < VM_NCASES; c++) {
        float y;
        vm_cases[c].fn(&nan, &y, 1);
        CHECK_MSG(isnan(y), "%s(nan) = %g", vm_cases[c].name, (double)y);
    }
    /* sin/cos beyond the exact reduction go to libm, mixed in one block with small values */
    float big[6] = {1e30f, 0.5f, -3e9f, 0x1p19f, 0x1.000002p19f, -1e5f}, ys[6], yc[6];
    pnV_sin_f32(big, ys, 6);
    pnV_cos_f32(big, yc, 6);
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(ulp_error(ys[i], sin((double)big[i])) <= 2, "sin(%g) = %.9g, libm %.9g",
                  (double)big[i], (double)ys[i], sin((double)big[i]));
        CHECK_MSG(ulp_error(yc[i], cos((double)big[i])) <= 2, "cos(%g) = %.9g, libm %.9g",
                  (double)big[i], (double)yc[i], cos((double)big[i]));
    }
    /* in place, across block boundaries, with a length that is no multiple of the vector width */
    const int64_t m = 2 * PNV_BLOCK + 37;
    float *a = malloc((size_t)m * sizeof(float));
    CHECK(a);
    for (int64_t i = 0; a && i < m; i++) a[i] = (float)test_uniform(-30, 30);
    if (a) a[PNV_BLOCK + 5] = 1e20f; /* one libm element in the second block */
    float *b = a ? malloc((size_t)m * sizeof(float)) : NULL;
    if (b) {
        memcpy(b, a, (size_t)m * sizeof(float));
        pnV_sin_f32(a, a, m);
        for (int64_t i = 0; i < m; i++)
            CHECK_MSG(ulp_error(a[i], sin((double)b[i])) <= 2, "in-place sin(%g) = %g",
                      (double)b[i], (double)a[i]);
    }
    free(a);
    free(b);
    pn_scope_pop();
}

/* ───────────────────────────── through the ops ───────────────────────────── */

typedef pn_array *(*unary_op)(pn_array *);
static const struct {
    const char *name;
    unary_op op;
    double (*ref)(double);
    double lo, hi; /* input range */
} ops[] = {
    {"exp", pn_exp, exp, -9, 10},            {"expm1", pn_expm1, expm1, -9, 10},
    {"log", pn_log, log, 1e-3, 6e4},         {"log1p", pn_log1p, log1p, -0.99, 100},
    {"log2", pn_log2, log2, 1e-3, 6e4},      {"sin", pn_sin, sin, -1e3, 1e3},
    {"cos", pn_cos, cos, -1e3, 1e3},         {"tanh", pn_tanh, tanh, -12, 12},
    {"sigmoid", pn_sigmoid, sigmoid_ref, -15, 15}, {"erf", pn_erf, erf, -5, 5},
}; /* ranges whose results stay normal in float16 */

/* Each op on f32 (dense and transposed, odd sizes), f16, bf16 and f64 against libm. */
TEST(vmath_elementwise_ops)
{
    pn_scope_push();
    const int64_t shapes[3][2] = {{1, 1}, {37, 53}, {129, 300}};
    const pn_dtype dts[4] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int si = 0; si < 3; si++)
            for (int di = 0; di < 4; di++)
                for (int tr = 0; tr < 2; tr++) {
                    pn_array *x = test_random_array(shapes[si], 2, dts[di], ops[o].lo, ops[o].hi);
                    if (tr) x = pn_transpose(x, NULL, 0);
                    double *xv = test_to_f64(x);
                    int64_t n = shapes[si][0] * shapes[si][1];
                    double *ref = malloc((size_t)n * sizeof(double));
                    CHECK(xv && ref);
                    for (int64_t i = 0; xv && ref && i < n; i++) ref[i] = ops[o].ref(xv[i]);
                    char what[96];
                    snprintf(what, sizeof what, "%s %s %lldx%lld%s", ops[o].name,
                             pn_dtype_name(dts[di]), (long long)shapes[si][0],
                             (long long)shapes[si][1], tr ? " transposed" : "");
                    double rtol = dts[di] == PN_FLOAT32 ? 5e-7 : test_tol(dts[di]);
                    const int64_t *shp = pn_shape(x);
                    if (ref)
                        test_check_values(what, ops[o].op(x), shp, 2, dts[di], ref, rtol,
                                          dts[di] == PN_FLOAT64   ? 1e-15
                                          : dts[di] == PN_FLOAT32 ? 1e-37
                                                                  : 1e-4);
                    free(xv);
                    free(ref);
                }
    pn_scope_pop();
}
