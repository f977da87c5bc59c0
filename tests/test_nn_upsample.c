/* test_nn_upsample.c — pn_nn_upsample (src/nn/upsample.c) against a float64 reference written
 * here (the sum over every corner of the per-axis taps, MLX's sampling grid), MLX's documented
 * examples, 1-, 2- and 3-d inputs, integer and fractional scales, every mode with and without
 * align_corners and antialiasing, dtypes, gradients and argument errors. */
#include "harness.h"

#include <string.h>

enum { NEAREST, LINEAR, CUBIC };
static const char *MODE_NAMES[] = {"nearest", "linear", "cubic"};

static float f32(float v) /* one float32 rounding, never fused into a multiply-add */
{
    volatile float r = v;
    return r;
}

static int64_t clampi(double v, int64_t n) { return v < 0 ? 0 : v > n - 1 ? n - 1 : (int64_t)v; }

/* MLX's float32 source position of output i (m outputs from n inputs). */
static float position(int64_t i, int64_t n, int64_t m, double s, bool align)
{
    if (align) return f32((float)i * (float)((double)(n - 1) / (double)(m > 1 ? m - 1 : 1)));
    double step = 1 / s, start = ((m - 1) * step - n + 1) / 2;
    return f32(f32((float)i * (float)step) - (float)start);
}

/* The taps of output i along one axis: returns their number, indices and weights (at most
 * MAX_TAPS). With aa (antialiased linear or cubic), every input j of the axis is a tap weighted
 * by the kernel at |p - j| shrunk by 1/s when downsampling (the triangle, or Keys' cubic with
 * a = -0.5), the weights normalized to sum 1. */
#define MAX_TAPS 64
static int taps(int mode, int64_t i, int64_t n, int64_t m, double s, bool align, bool aa, int64_t *idx, double *w)
{
    if (aa) {
        double p = position(i, n, m, s, false), widen = s < 1 ? 1 / s : 1, sum = 0;
        for (int64_t j = 0; j < n; j++) {
            double x = fabs(p - (double)j) / widen, a = -0.5;
            idx[j] = j;
            w[j] = mode == LINEAR ? (x < 1 ? 1 - x : 0)
                   : x <= 1     ? ((a + 2) * x - (a + 3)) * x * x + 1
                   : x <= 2     ? (((x - 5) * x + 8) * x - 4) * a
                                : 0;
            sum += w[j];
        }
        for (int64_t j = 0; j < n; j++) w[j] /= sum > 0 ? sum : 1;
        return (int)n;
    }
    if (mode == NEAREST) {
        float r = (float)((double)n / m);
        float p = m > n ? rintf(f32(f32((i + 0.5f) * r) - 0.5f)) : f32(i * r);
        idx[0] = clampi(p, n), w[0] = 1;
        return 1;
    }
    float p = position(i, n, m, s, align);
    if (mode == LINEAR) {
        p = p < 0 ? 0 : p > n - 1 ? (float)(n - 1) : p;
        double fl = floor(p), frac = p - fl;
        idx[0] = clampi(fl, n), idx[1] = clampi(ceil(p), n);
        w[0] = 1 - frac, w[1] = frac;
        return 2;
    }
    /* Keys' cubic convolution with a = -0.75 */
    double a = -0.75, base = floor(p);
    for (int k = -1; k <= 2; k++) {
        double g = base + k, x = fabs(p - g);
        idx[k + 1] = clampi(g, n);
        w[k + 1] = x <= 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : (((x - 5) * x + 8) * x - 4) * a;
    }
    return 4;
}

/* The reference: x (B, n[0..d-1], C) -> (B, m[...], C); each output is the sum over every
 * combination of one tap per axis of the product of the weights times x there. */
static double *ref_upsample(const double *x, int64_t B, const int64_t *n, int d, int64_t C, const double *s,
                            int mode, bool align, bool aa, int64_t *m)
{
    int64_t total_in = 1, total_out = 1;
    for (int k = 0; k < d; k++) m[k] = (int64_t)(s[k] * n[k]), total_in *= n[k], total_out *= m[k];
    double *y = calloc((size_t)(B * total_out * C + 1), sizeof *y);
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < total_out; o++) {
            int64_t ti[3][MAX_TAPS], nt[3], rem = o, oi[3];
            double tw[3][MAX_TAPS];
            for (int k = d - 1; k >= 0; k--) oi[k] = rem % m[k], rem /= m[k];
            for (int k = 0; k < d; k++) nt[k] = taps(mode, oi[k], n[k], m[k], s[k], align, aa, ti[k], tw[k]);
            int64_t combos = 1;
            for (int k = 0; k < d; k++) combos *= nt[k];
            for (int64_t cmb = 0; cmb < combos; cmb++) {
                int64_t r = cmb, src = 0;
                double wt = 1;
                for (int k = 0; k < d; k++) {
                    int64_t t = r % nt[k];
                    r /= nt[k];
                    src = src * n[k] + ti[k][t];
                    wt *= tw[k][t];
                }
                for (int64_t c = 0; c < C; c++) y[(b * total_out + o) * C + c] += wt * x[(b * total_in + src) * C + c];
            }
        }
    return y;
}

TEST(upsample_mlx_examples)
{
    pn_scope_push();
    pn_array *x = pn_reshape(pn_arange(1, 5, 1, PN_INT32), (int64_t[]){1, 2, 2, 1}, 4);
    int64_t sh[4] = {1, 4, 4, 1};
    double two = 2;
    double nearest[] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    double linear[] = {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4};
    double t = 1.0 / 3;
    double aligned[] = {1, 1 + t, 2 - t, 2, 2 - t, 2, 2 + t, 3 - t, 2 + t, 3 - t, 3, 3 + t, 3, 3 + t, 4 - t, 4};
    test_check_values("nearest example", pn_nn_upsample(x, &two, 1, "nearest", false, false), sh, 4, PN_INT32, nearest, 0, 0);
    test_check_values("nearest example (NULL mode)", pn_nn_upsample(x, &two, 1, NULL, true, false), sh, 4, PN_INT32, nearest, 0,
                      0);
    test_check_values("linear example", pn_nn_upsample(x, &two, 1, "linear", false, false), sh, 4, PN_FLOAT32, linear, 1e-6,
                      1e-6);
    test_check_values("linear example (align_corners)", pn_nn_upsample(x, &two, 1, "linear", true, false), sh, 4, PN_FLOAT32,
                      aligned, 1e-6, 1e-6);
    /* 1-d cubic of a line: interior samples reproduce it, the borders repeat (align_corners: the
     * line 0, 1, ..., 4 at positions i * 4/8) */
    pn_array *line = pn_reshape(pn_arange(0, 5, 1, PN_FLOAT64), (int64_t[]){1, 5, 1}, 3);
    double s = 9.0 / 5, *cub = test_to_f64(pn_nn_upsample(line, &s, 1, "cubic", true, false));
    for (int i = 2; i < 7 && cub; i++) CHECK_MSG(fabs(cub[i] - i * 0.5) < 1e-6, "cubic line %d: %g", i, cub[i]);
    free(cub);
    pn_scope_pop();
}

/* A case: d spatial axes of sizes n, batch B, C channels, one scale per axis. */
typedef struct {
    int d;
    int64_t B, n[3], C;
    double s[3];
} up_case;

/* Upsamples random data of case c in dtype dt with mode, align_corners and antialias, against
 * the float64 reference. */
static void check_case(const up_case *c, int mode, bool align, bool aa, pn_dtype dt)
{
    pn_scope_push();
    int64_t shape[5], m[3], oshape[5];
    shape[0] = oshape[0] = c->B;
    for (int k = 0; k < c->d; k++) shape[k + 1] = c->n[k];
    shape[c->d + 1] = oshape[c->d + 1] = c->C;
    pn_array *x = test_random_array(shape, c->d + 2, dt, -2, 2);
    double *xv = test_to_f64(x);
    double *ref = ref_upsample(xv, c->B, c->n, c->d, c->C, c->s, mode, align, aa, m);
    for (int k = 0; k < c->d; k++) oshape[k + 1] = m[k];
    double tol = dt == PN_FLOAT64 ? 1e-12 : 2e-6;
    pn_array *y = pn_nn_upsample(x, c->s, c->d, MODE_NAMES[mode], align, aa);
    CHECK_OK(y);
    if (!test_check_values("upsample", y, oshape, c->d + 2, dt, ref, tol, tol))
        fprintf(stderr, "  %dd scale %g mode %s align %d antialias %d dtype %s\n", c->d, c->s[0], MODE_NAMES[mode],
                align, aa, pn_dtype_name(dt));
    free(xv), free(ref);
    pn_scope_pop();
}

TEST(upsample_values)
{
    static const up_case cases[] = {
        {1, 2, {5}, 3, {2}},         {1, 2, {5}, 3, {1.5}},        {1, 1, {7}, 2, {0.6}},
        {1, 3, {4}, 1, {3}},         {1, 1, {1}, 2, {2.5}},        {2, 2, {4, 3}, 2, {2, 2}},
        {2, 1, {3, 5}, 3, {1.5, 2.5}}, {2, 2, {4, 4}, 1, {1, 3}}, {2, 1, {6, 5}, 2, {0.5, 1.7}},
        {3, 1, {3, 2, 4}, 2, {2, 1.5, 0.75}}, {3, 2, {2, 2, 2}, 1, {2, 3, 2}},
    };
    int ncases = sizeof cases / sizeof cases[0];
    for (int ci = 0; ci < ncases; ci++)
        for (int mode = 0; mode < 3; mode++)
            for (int align = 0; align < 2; align++)
                for (int di = 0; di < 2; di++)
                    if (!test_quick() || !(ci % 2 || di))
                        check_case(&cases[ci], mode, align, false, di ? PN_FLOAT32 : PN_FLOAT64);
}

TEST(upsample_one_scale_dtypes_and_empty)
{
    pn_scope_push();
    int64_t sh[4] = {2, 3, 4, 2}, n[2] = {3, 4}, m[2];
    pn_array *x = test_random_array(sh, 4, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), s = 1.5, s2[2] = {1.5, 1.5};
    for (int mode = 0; mode < 3; mode++) {
        double *ref = ref_upsample(xv, 2, n, 2, 2, s2, mode, false, false, m);
        test_check_values("upsample one scale", pn_nn_upsample(x, &s, 1, MODE_NAMES[mode], false, false),
                          (int64_t[]){2, m[0], m[1], 2}, 4, PN_FLOAT64, ref, 1e-12, 1e-12);
        free(ref);
    }
    free(xv);
    /* dtypes: nearest keeps it, linear/cubic promote with float32 */
    pn_array *xi = test_random_array(sh, 4, PN_INT32, -5, 5);
    pn_array *xh = test_random_array(sh, 4, PN_FLOAT16, -2, 2);
    double two = 2;
    CHECK(pn_array_dtype(pn_nn_upsample(xi, &s, 1, "nearest", false, false)) == PN_INT32);
    CHECK(pn_array_dtype(pn_nn_upsample(xi, &two, 1, "nearest", false, false)) == PN_INT32);
    CHECK(pn_array_dtype(pn_nn_upsample(xh, &s, 1, "nearest", false, false)) == PN_FLOAT16);
    CHECK(pn_array_dtype(pn_nn_upsample(xi, &s, 1, "linear", false, false)) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_nn_upsample(xh, &s, 1, "cubic", true, false)) == PN_FLOAT32);
    /* float16 values match the reference on the float16 data */
    double *hv = test_to_f64(xh);
    double *ref = ref_upsample(hv, 2, n, 2, 2, s2, LINEAR, true, false, m);
    test_check_values("upsample f16 linear", pn_nn_upsample(xh, &s, 1, "linear", true, false), (int64_t[]){2, m[0], m[1], 2},
                      4, PN_FLOAT32, ref, 1e-6, 1e-6);
    free(hv), free(ref);
    /* a scale that leaves no output */
    double small = 0.2;
    pn_array *e = pn_nn_upsample(test_random_array((int64_t[]){1, 4, 2}, 3, PN_FLOAT32, -1, 1), &small, 1, "linear",
                                 false, false);
    CHECK_OK(e);
    if (e) CHECK(pn_ndim(e) == 3 && pn_shape(e)[1] == 0 && pn_eval(&e, 1) == 0);
    /* a strided (transposed) input */
    pn_array *x4 = test_random_array((int64_t[]){2, 4, 3, 2}, 4, PN_FLOAT64, -1, 1);
    pn_array *xt = pn_transpose(x4, (int[]){0, 2, 1, 3}, 4);
    double *tv = test_to_f64(xt), sc[2] = {2.5, 1.5};
    int64_t nt[2] = {3, 4};
    ref = ref_upsample(tv, 2, nt, 2, 2, sc, CUBIC, false, false, m);
    test_check_values("upsample strided cubic", pn_nn_upsample(xt, sc, 2, "cubic", false, false), (int64_t[]){2, m[0], m[1], 2},
                      4, PN_FLOAT64, ref, 1e-12, 1e-12);
    free(tv), free(ref);
    pn_scope_pop();
}

/* Antialiased linear and cubic, 1-, 2- and 3-d, down- and upsampling (integer and fractional
 * factors, a factor that widens the cubic filter past 8 taps), float64 and float32, against the
 * reference summing the kernel over every input. */
TEST(upsample_antialias)
{
    pn_scope_push();
    static const up_case cases[] = {
        {1, 2, {8}, 3, {0.5}},   {1, 1, {13}, 2, {0.3}},     {1, 2, {5}, 1, {2}},   {1, 1, {9}, 2, {0.77}},
        {2, 2, {8, 6}, 2, {0.5, 0.5}}, {2, 1, {12, 7}, 3, {0.25, 1.5}}, {2, 2, {5, 9}, 1, {0.6, 0.34}},
        {3, 1, {6, 4, 5}, 2, {0.5, 2, 0.4}},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int mode = LINEAR; mode <= CUBIC; mode++)
            for (int di = 0; di < 2; di++) check_case(&cases[ci], mode, false, true, di ? PN_FLOAT32 : PN_FLOAT64);
    /* nearest has no antialiased form, and align_corners none either (MLX's errors) */
    pn_array *x4 = test_random_array((int64_t[]){1, 4, 3, 2}, 4, PN_FLOAT32, -1, 1);
    double half = 0.5;
    CHECK_ERR(pn_nn_upsample(x4, &half, 1, "nearest", false, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, &half, 1, "linear", true, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, &half, 1, "cubic", true, true), PN_ERR_INVALID_ARGUMENT);
    /* a scale so small that no output is left: an empty result, not a filter of 10^9 taps */
    double tiny = 1e-9;
    pn_array *e = pn_nn_upsample(x4, &tiny, 1, "cubic", false, true);
    CHECK_OK(e);
    if (e) CHECK(pn_shape(e)[1] == 0 && pn_shape(e)[2] == 0 && pn_eval(&e, 1) == 0);
    pn_scope_pop();
}

typedef struct {
    int mode;
    bool align, aa;
    double s[2];
} up_ctx;

static pn_array *upsample_op(void *ctx, pn_array *const *in)
{
    const up_ctx *u = ctx;
    return pn_nn_upsample(in[0], u->s, 2, MODE_NAMES[u->mode], u->align, u->aa);
}

TEST(upsample_gradients)
{
    pn_scope_push();
    pn_array *x = test_random_array((int64_t[]){1, 3, 4, 2}, 4, PN_FLOAT64, -1, 1);
    up_ctx cases[] = {{NEAREST, false, false, {2, 3}}, {NEAREST, false, false, {1.5, 0.75}},
                      {LINEAR, false, false, {2, 1.5}}, {LINEAR, true, false, {1.7, 2}},
                      {CUBIC, false, false, {2, 1.25}}, {CUBIC, true, false, {1.5, 2}},
                      {LINEAR, false, true, {0.5, 1.5}}, {CUBIC, false, true, {0.75, 0.5}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_MSG(test_gradcheck("upsample", upsample_op, &cases[i], 1, &x, 1e-6), "upsample grad case %zu", i);
    pn_scope_pop();
}

TEST(upsample_errors)
{
    pn_scope_push();
    pn_array *x2 = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *x4 = test_random_array((int64_t[]){1, 4, 3, 2}, 4, PN_FLOAT32, -1, 1);
    double s1 = 2, s2[2] = {2, 2}, s3[3] = {2, 2, 2}, bad[2] = {2, -1}, zero = 0, nan = NAN, inf = INFINITY;
    CHECK_ERR(pn_nn_upsample(x2, &s1, 1, "nearest", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, s3, 3, "linear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, s2, 0, "linear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, NULL, 2, "linear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, bad, 2, "cubic", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, &zero, 1, "nearest", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, &nan, 1, "nearest", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, &inf, 1, "linear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(x4, s2, 2, "bilinear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_upsample(NULL, s2, 2, "linear", false, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_OK(pn_nn_upsample(x4, s2, 2, "linear", false, false));
    pn_scope_pop();
}
