/* test_qqmm.c — pn_qqmm and pn_gather_qqmm (src/ops/quantized.c) against float64 references
 * written here from the formats (nvfp4, mxfp8, mxfp4 rounding of x and w, products), with
 * floating and pre-quantized weights, batched, broadcast and 1-d x, gathers, MLX's gradient
 * rule (operands rounded along the contracted axis), and the errors. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* One mode: name, group size, element max, fp8 elements?, e8m0 scales? */
typedef struct qmode {
    const char *name;
    int gs;
    double emax;
    bool fp8, e8m0;
} qmode;

static const qmode modes[] = {
    {"nvfp4", 16, 6, false, false}, {"mxfp8", 32, 448, true, true}, {"mxfp4", 32, 6, false, true}};

static const double fp4_values[8] = {0, .5, 1, 1.5, 2, 3, 4, 6};

/* The fp8 e4m3 value of code c (0..126, positive). */
static double e4m3_value(int c)
{
    int e = c >> 3, m = c & 7;
    return e ? ldexp(1 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
}

/* |x| rounded to the nearest e4m3 value (ties to the even code), saturating at 448. */
static double e4m3_round(double x)
{
    double a = fabs(x), best = 0, bd = INFINITY;
    for (int c = 0; c < 127; c++) {
        double d = fabs(e4m3_value(c) - a);
        if (d < bd || (d == bd && !(c & 1)))
            bd = d, best = e4m3_value(c);
    }
    return x < 0 ? -best : best;
}

/* x rounded to fp4 e2m1 (nearest; ties to the even code, as MLX's QQMatmul), saturating at 6. */
static double fp4_round(double x)
{
    double a = fabs(x), best = 0, bd = INFINITY;
    for (int c = 0; c < 8; c++) {
        double d = fabs(fp4_values[c] - a);
        if (d < bd || (d == bd && !(c & 1)))
            bd = d, best = fp4_values[c];
    }
    return x < 0 ? -best : best;
}

/* v (rows of k float32 values) rounded in place through mode m group by group: amax / emax in
 * float32, the scale rounded to e4m3 (nvfp4) or up to a power of two (mx), each value / scale
 * (float32) rounded to the element format, times the scale. */
static void ref_round(const qmode *m, double *v, int64_t rows, int64_t k)
{
    for (int64_t g = 0; g < rows * k / m->gs; g++) {
        double *p = v + g * m->gs, amax = 0;
        for (int i = 0; i < m->gs; i++)
            amax = fmax(amax, fabs(p[i]));
        float s = (float)amax / (float)m->emax;
        double sc = m->e8m0 ? (s == 0 ? 1 : ldexp(1, (int)ceil(log2(s)))) : e4m3_round(s);
        for (int i = 0; i < m->gs; i++) {
            float x = sc == 0 ? 0.0f : (float)p[i] / (float)sc;
            p[i] = (m->fp8 ? e4m3_round(x) : fp4_round(x)) * sc;
        }
    }
}

/* out (M, N) = a (M, K) @ b (N, K)^T in float64. */
static void ref_mm_t(const double *a, const double *b, double *out, int64_t M, int64_t N, int64_t K)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += a[i * K + k] * b[j * K + k];
            out[i * N + j] = s;
        }
}

/* qqmm of x (B, M, K) with a 2-d floating w (N, K), with w as given and pre-quantized, in
 * float32, checked against the float64 reference. */
static void check_forward(const qmode *m, const int64_t *xs, int xnd, int64_t N)
{
    int64_t K = xs[xnd - 1], M = xnd > 1 ? xs[xnd - 2] : 1, B = 1;
    for (int i = 0; i < xnd - 2; i++)
        B *= xs[i];
    int64_t ws[2] = {N, K};
    pn_array *x = test_random_array(xs, xnd, PN_FLOAT32, -3, 3);
    pn_array *w = test_random_array(ws, 2, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x), *wv = test_to_f64(w), *ref = malloc(sizeof(double) * B * M * N);
    ref_round(m, xv, B * M, K);
    ref_round(m, wv, N, K);
    for (int64_t b = 0; b < B; b++)
        ref_mm_t(xv + b * M * K, wv, ref + b * M * N, M, N, K);
    int64_t os[8];
    memcpy(os, xs, sizeof(int64_t) * xnd);
    os[xnd - 1] = N;
    char what[96];
    snprintf(what, sizeof what, "qqmm %s float w, x %d-d", m->name, xnd);
    test_check_values(what, pn_qqmm(x, w, NULL, 0, 0, m->name, NULL, NULL), os, xnd, PN_FLOAT32,
                      ref, 1e-5, 1e-4);
    pn_array *q[3] = {NULL, NULL, NULL};
    CHECK(pn_quantize(w, 0, 0, m->name, NULL, q) == 0);
    snprintf(what, sizeof what, "qqmm %s quantized w, x %d-d", m->name, xnd);
    test_check_values(what, pn_qqmm(x, q[0], q[1], 0, 0, m->name, NULL, NULL), os, xnd, PN_FLOAT32,
                      ref, 1e-5, 1e-4);
    free(xv), free(wv), free(ref);
}

TEST(qqmm_forward_every_mode)
{
    pn_scope_push();
    for (int i = 0; i < 3; i++) {
        const qmode *m = &modes[i];
        int64_t K = 2 * m->gs;
        int64_t s2[2] = {3, K}, s3[3] = {2, 3, K}, s1[1] = {K};
        check_forward(m, s2, 2, 5);
        check_forward(m, s3, 3, 4);
        check_forward(m, s1, 1, 6);
    }
    /* nvfp4 is the default mode; bfloat16 x gives a bfloat16 result */
    int64_t xs[2] = {2, 32}, ws[2] = {3, 32};
    pn_array *x = test_random_array(xs, 2, PN_BFLOAT16, -1, 1);
    pn_array *w = test_random_array(ws, 2, PN_FLOAT32, -1, 1);
    pn_array *a = pn_qqmm(x, w, NULL, 0, 0, NULL, NULL, NULL);
    CHECK_OK(a);
    CHECK(a && pn_array_dtype(a) == PN_BFLOAT16 && pn_shape(a)[1] == 3);
    double *xv = test_to_f64(x), *wv = test_to_f64(w), ref[6];
    ref_round(&modes[0], xv, 2, 32);
    ref_round(&modes[0], wv, 3, 32);
    ref_mm_t(xv, wv, ref, 2, 3, 32);
    int64_t os[2] = {2, 3};
    test_check_values("qqmm bfloat16", a, os, 2, PN_BFLOAT16, ref, 2e-2, 2e-2);
    free(xv), free(wv);
    pn_scope_pop();
}

/* Exact ties between fp4 values round to the even code: a group of 16 with max 6 has scale 1
 * (nvfp4), so .25, .75, 1.25, 1.75, 2.5, 3.5, 5 sit halfway. */
TEST(qqmm_fp4_ties_to_even)
{
    pn_scope_push();
    float xv[16] = {6, .25f, .75f, 1.25f, 1.75f, 2.5f, 3.5f, 5, -.75f, -2.5f, -5, 0, 1, 2, 3, 4};
    double ref[16];
    for (int i = 0; i < 16; i++)
        ref[i] = 6 * fp4_round(xv[i]);
    CHECK(ref[2] == 6 && ref[5] == 12 && ref[7] == 24); /* .75 -> 1, 2.5 -> 2, 5 -> 4 */
    int64_t xs[2] = {1, 16}, os[2] = {1, 16};
    float eye[16 * 16] = {0};
    for (int i = 0; i < 16; i++)
        eye[i * 16 + i] = 6;
    pn_array *x = pn_array_from_data(xv, xs, 2, PN_FLOAT32);
    pn_array *w = pn_array_from_data(eye, (int64_t[]){16, 16}, 2, PN_FLOAT32);
    test_check_values("fp4 ties", pn_qqmm(x, w, NULL, 0, 0, "nvfp4", NULL, NULL), os, 2, PN_FLOAT32,
                      ref, 0, 0);
    pn_scope_pop();
}

/* Batched w: x (2, 3, K) @ w (2, N, K) per batch item, and gather_qqmm against per-item
 * products. */
TEST(qqmm_batched_and_gather)
{
    pn_scope_push();
    const qmode *m = &modes[1];
    const int64_t K = 32, M = 2, N = 3;
    int64_t xs[3] = {4, M, K}, ws[3] = {3, N, K};
    pn_array *x = test_random_array(xs, 3, PN_FLOAT32, -2, 2);
    pn_array *w = test_random_array(ws, 3, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x), *wv = test_to_f64(w);
    ref_round(m, xv, 4 * M, K);
    ref_round(m, wv, 3 * N, K);
    int32_t li[5] = {3, 0, 2, 2, 1}, ri[5] = {1, 2, 0, 0, 2};
    int64_t is[1] = {5};
    pn_array *l = pn_array_from_data(li, is, 1, PN_INT32),
             *r = pn_array_from_data(ri, is, 1, PN_INT32);
    double ref[5 * M * N];
    for (int i = 0; i < 5; i++)
        ref_mm_t(xv + li[i] * M * K, wv + ri[i] * N * K, ref + i * M * N, M, N, K);
    int64_t os[3] = {5, M, N};
    test_check_values("gather_qqmm float w",
                      pn_gather_qqmm(x, w, NULL, l, r, 0, 0, "mxfp8", NULL, NULL, false), os, 3,
                      PN_FLOAT32, ref, 1e-5, 1e-4);
    pn_array *q[3] = {NULL, NULL, NULL};
    CHECK(pn_quantize(w, 0, 0, "mxfp8", NULL, q) == 0);
    test_check_values("gather_qqmm quantized w",
                      pn_gather_qqmm(x, q[0], q[1], l, r, 0, 0, "mxfp8", NULL, NULL, true), os, 3,
                      PN_FLOAT32, ref, 1e-5, 1e-4);
    /* rhs only: x (3, M, K) item i with w[ri] */
    double ref2[3 * M * N];
    int32_t r3[3] = {2, 2, 0};
    for (int i = 0; i < 3; i++)
        ref_mm_t(xv + i * M * K, wv + r3[i] * N * K, ref2 + i * M * N, M, N, K);
    int64_t s3[1] = {3}, xs3[3] = {3, M, K}, os3[3] = {3, M, N};
    pn_array *x3 = pn_slice(x, (int64_t[]){0, 0, 0}, xs3, NULL, 3);
    test_check_values("gather_qqmm rhs only",
                      pn_gather_qqmm(x3, w, NULL, NULL, pn_array_from_data(r3, s3, 1, PN_INT32), 0,
                                     0, "mxfp8", NULL, NULL, false),
                      os3, 3, PN_FLOAT32, ref2, 1e-5, 1e-4);
    /* no indices: plain batched qqmm (w broadcast over x's batch when shapes allow) */
    int64_t ws1[3] = {1, N, K};
    pn_array *w1 = pn_slice(w, (int64_t[]){0, 0, 0}, ws1, NULL, 3);
    double ref3[4 * M * N];
    for (int i = 0; i < 4; i++)
        ref_mm_t(xv + i * M * K, wv, ref3 + i * M * N, M, N, K);
    int64_t os4[3] = {4, M, N};
    test_check_values("gather_qqmm no indices",
                      pn_gather_qqmm(x, w1, NULL, NULL, NULL, 0, 0, "mxfp8", NULL, NULL, false),
                      os4, 3, PN_FLOAT32, ref3, 1e-5, 1e-4);
    free(xv), free(wv);
    pn_scope_pop();
}

/* f(x, w) = sum(qqmm(x, w) * c) for the vjp test. */
static pn_array *cot;
static int qq_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const qmode *m = ctx;
    out[0] = pn_sum(pn_multiply(pn_qqmm(in[0], in[1], NULL, 0, 0, m->name, NULL, NULL), cot), NULL,
                    0, false);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* MLX's rule: dx = round_N(g) @ round_N(w^T)^T, dw = round_M(g^T) @ round_M(x^T)^T. */
TEST(qqmm_gradient_rule)
{
    pn_scope_push();
    for (int i = 0; i < 3; i++) {
        qmode *m = (qmode *)&modes[i];
        const int64_t M = m->gs, N = m->gs, K = 2 * m->gs;
        int64_t xs[2] = {M, K}, ws[2] = {N, K}, cs[2] = {M, N};
        pn_array *in[2] = {test_random_array(xs, 2, PN_FLOAT32, -2, 2),
                           test_random_array(ws, 2, PN_FLOAT32, -1, 1)};
        cot = test_random_array(cs, 2, PN_FLOAT32, -1, 1);
        double *xv = test_to_f64(in[0]), *wv = test_to_f64(in[1]), *gv = test_to_f64(cot);
        double *wt = malloc(sizeof(double) * K * N), *gt = malloc(sizeof(double) * N * M),
               *xt = malloc(sizeof(double) * K * M), dx[M * K], dw[N * K];
        for (int64_t a = 0; a < N; a++)
            for (int64_t b = 0; b < K; b++)
                wt[b * N + a] = wv[a * K + b];
        for (int64_t a = 0; a < M; a++) {
            for (int64_t b = 0; b < N; b++)
                gt[b * M + a] = gv[a * N + b];
            for (int64_t b = 0; b < K; b++)
                xt[b * M + a] = xv[a * K + b];
        }
        ref_round(m, gv, M, N);
        ref_round(m, wt, K, N);
        ref_round(m, gt, N, M);
        ref_round(m, xt, K, M);
        ref_mm_t(gv, wt, dx, M, K, N);
        ref_mm_t(gt, xt, dw, N, K, M);
        pn_closure *f = pn_closure_new(qq_loss, m, NULL);
        pn_closure *g = pn_grad(f, (int[]){0, 1}, 2);
        pn_array *out[PN_MAX_OUTPUTS];
        int n = 0;
        CHECK(pn_closure_call(g, 2, in, &n, out) == 0 && n == 2);
        if (n == 2) {
            test_check_values("qqmm dx", out[0], xs, 2, PN_FLOAT32, dx, 1e-5, 1e-4);
            test_check_values("qqmm dw", out[1], ws, 2, PN_FLOAT32, dw, 1e-5, 1e-4);
        }
        pn_closure_release(g), pn_closure_release(f);
        free(xv), free(wv), free(gv), free(wt), free(gt), free(xt);
    }
    pn_scope_pop();
}

TEST(qqmm_errors)
{
    pn_scope_push();
    int64_t xs[2] = {2, 32}, ws[2] = {3, 32}, bad[2] = {3, 24};
    pn_array *x = test_random_array(xs, 2, PN_FLOAT32, -1, 1);
    pn_array *w = test_random_array(ws, 2, PN_FLOAT32, -1, 1);
    pn_array *q[3] = {NULL, NULL, NULL};
    CHECK(pn_quantize(w, 0, 0, "nvfp4", NULL, q) == 0);
    pn_array *g = pn_scalar(1.0, PN_FLOAT32);
    CHECK_ERR(pn_qqmm(x, w, NULL, 0, 0, "affine", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, w, NULL, 0, 0, "bogus", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, w, NULL, 32, 0, "nvfp4", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(pn_astype(x, PN_FLOAT64), w, NULL, 0, 0, "nvfp4", NULL, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, pn_astype(w, PN_INT32), NULL, 0, 0, "nvfp4", NULL, NULL),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, q[0], NULL, 0, 0, "nvfp4", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, w, q[1], 0, 0, "nvfp4", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, w, NULL, 0, 0, "nvfp4", g, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, w, NULL, 0, 0, "mxfp8", g, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(
        pn_qqmm(x, test_random_array(bad, 2, PN_FLOAT32, -1, 1), NULL, 0, 0, "nvfp4", NULL, NULL),
        PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(x, q[0], q[1], 0, 0, "mxfp8", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_qqmm(NULL, w, NULL, 0, 0, "nvfp4", NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    int64_t is[1] = {2};
    CHECK_ERR(pn_gather_qqmm(x, w, NULL, pn_zeros(is, 1, PN_FLOAT32), NULL, 0, 0, "nvfp4", NULL,
                             NULL, false),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_gather_qqmm(pn_reshape(x, (int64_t[]){64}, 1), w, NULL, pn_zeros(is, 1, PN_INT32),
                             NULL, 0, 0, "nvfp4", NULL, NULL, false),
              PN_ERR_INVALID_ARGUMENT);
    /* with both global scales (nvfp4) the result stays close to the float product */
    pn_array *y = pn_qqmm(x, w, NULL, 0, 0, "nvfp4", pn_max(pn_abs(x), NULL, 0, false),
                          pn_max(pn_abs(w), NULL, 0, false));
    CHECK_OK(y);
    double *yv = test_to_f64(y), *xv = test_to_f64(x), *wv = test_to_f64(w), ref[6];
    ref_mm_t(xv, wv, ref, 2, 3, 32);
    for (int i = 0; yv && i < 6; i++)
        CHECK_MSG(fabs(yv[i] - ref[i]) < 1.5, "%g vs %g", yv[i], ref[i]);
    free(yv), free(xv), free(wv);
    pn_scope_pop();
}
