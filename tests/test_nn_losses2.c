/* test_nn_losses2.c — what issue 3 added to C from mlx.nn: the losses log_cosh, hinge,
 * cosine_similarity, margin_ranking, gaussian_nll and triplet (float64 formulas here, random data,
 * several shapes, every reduction), the activations softshrink, hard_shrink, step and softmin,
 * the initializers constant, identity, sparse and orthogonal; gradients by finite differences
 * and argument errors. */
#include "harness.h"

#include <string.h>

#define RED_N 3
static const pn_loss_reduction REDS[RED_N] = {PN_REDUCTION_NONE, PN_REDUCTION_MEAN, PN_REDUCTION_SUM};

/* Checks r (computed with reduction red) against the unreduced reference ref[n] of shape. */
static void check_red(const char *what, pn_array *r, pn_loss_reduction red, const double *ref, int64_t n,
                      const int64_t *shape, int ndim, pn_dtype dt)
{
    double tol = dt == PN_FLOAT64 ? 1e-11 : 2e-5;
    if (red == PN_REDUCTION_NONE) {
        test_check_values(what, r, shape, ndim, dt, ref, tol, tol);
        return;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ref[i];
    if (red == PN_REDUCTION_MEAN) s /= (double)n;
    test_check_values(what, r, NULL, 0, dt, &s, tol, tol);
}

/* Sizes of the axes before, at and after ax. */
static void split(const int64_t *shape, int ndim, int ax, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < ax; i++) *outer *= shape[i];
    for (int i = ax + 1; i < ndim; i++) *inner *= shape[i];
    *len = shape[ax];
}

static const int64_t SHAPES[3][3] = {{7, 0, 0}, {4, 6, 0}, {2, 3, 5}};
static const int NDIMS[3] = {1, 2, 3};

TEST(elementwise_losses)
{
    pn_scope_push();
    for (int s = 0; s < 3; s++) {
        const int64_t *sh = SHAPES[s];
        int nd = NDIMS[s];
        for (int dtk = 0; dtk < 2; dtk++) {
            pn_dtype dt = dtk ? PN_FLOAT32 : PN_FLOAT64;
            pn_array *x = test_random_array(sh, nd, dt, -3, 3), *y = test_random_array(sh, nd, dt, -3, 3);
            pn_array *z = test_random_array(sh, nd, dt, -3, 3);
            pn_array *v = test_random_array(sh, nd, dt, -0.2, 2); /* some below eps: clamped */
            double *xv = test_to_f64(x), *yv = test_to_f64(y), *zv = test_to_f64(z), *vv = test_to_f64(v);
            int64_t n = pn_size(x);
            double *lc = malloc(n * sizeof *lc), *hi = malloc(n * sizeof *hi), *mr = malloc(n * sizeof *mr);
            double *gn = malloc(n * sizeof *gn), *gf = malloc(n * sizeof *gf);
            for (int64_t i = 0; i < n; i++) {
                lc[i] = log(cosh(xv[i] - yv[i]));
                hi[i] = fmax(1 - xv[i] * yv[i], 0);
                mr[i] = fmax(-(zv[i] > 0 ? 1 : -1) * (xv[i] - yv[i]) + 0.3, 0);
                double var = fmax(vv[i], 1e-2);
                gn[i] = 0.5 * (log(var) + (yv[i] - xv[i]) * (yv[i] - xv[i]) / var);
                gf[i] = gn[i] + 0.5 * log(2 * M_PI);
            }
            pn_array *sign = pn_where(pn_greater(z, pn_weak_float(0)), pn_ones_like(z), pn_negative(pn_ones_like(z)));
            for (int k = 0; k < RED_N; k++) {
                pn_loss_reduction r = REDS[k];
                check_red("log_cosh", pn_nn_log_cosh_loss(x, y, r), r, lc, n, sh, nd, dt);
                check_red("hinge", pn_nn_hinge_loss(x, y, r), r, hi, n, sh, nd, dt);
                check_red("margin_ranking", pn_nn_margin_ranking_loss(x, y, sign, 0.3, r), r, mr, n, sh, nd, dt);
                check_red("gaussian_nll", pn_nn_gaussian_nll_loss(x, y, v, false, 1e-2, r), r, gn, n, sh, nd, dt);
                check_red("gaussian_nll full", pn_nn_gaussian_nll_loss(x, y, v, true, 1e-2, r), r, gf, n, sh, nd, dt);
            }
            free(lc), free(hi), free(mr), free(gn), free(gf), free(xv), free(yv), free(zv), free(vv);
        }
    }
    /* log_cosh stays finite for large differences (logaddexp form) */
    double big[2] = {200, -300}, want[2] = {200 - M_LN2, 300 - M_LN2};
    pn_array *b = pn_array_from_data(big, (int64_t[]){2}, 1, PN_FLOAT64);
    test_check_values("log_cosh large", pn_nn_log_cosh_loss(b, pn_zeros_like(b), PN_REDUCTION_NONE),
                      (int64_t[]){2}, 1, PN_FLOAT64, want, 1e-12, 1e-12);
    /* hinge broadcasts as MLX's does */
    pn_array *x = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -2, 2);
    pn_array *t = test_random_array((int64_t[]){4}, 1, PN_FLOAT64, -2, 2);
    double *xv = test_to_f64(x), *tv = test_to_f64(t), h[12];
    for (int i = 0; i < 12; i++) h[i] = fmax(1 - xv[i] * tv[i % 4], 0);
    test_check_values("hinge broadcast", pn_nn_hinge_loss(x, t, PN_REDUCTION_NONE), (int64_t[]){3, 4}, 2,
                      PN_FLOAT64, h, 1e-12, 1e-12);
    free(xv), free(tv);
    pn_scope_pop();
}

TEST(axis_losses)
{
    pn_scope_push();
    const int axes[3][2] = {{0, -1}, {1, -1}, {1, 2}};
    for (int s = 0; s < 3; s++) {
        const int64_t *sh = SHAPES[s];
        int nd = NDIMS[s];
        for (int ai = 0; ai < 2; ai++) {
            int axis = axes[s][ai], ax = axis < 0 ? axis + nd : axis;
            int64_t outer, len, inner, osh[3];
            split(sh, nd, ax, &outer, &len, &inner);
            for (int i = 0, j = 0; i < nd; i++)
                if (i != ax) osh[j++] = sh[i];
            pn_array *a = test_random_array(sh, nd, PN_FLOAT64, -2, 2), *p = test_random_array(sh, nd, PN_FLOAT64, -2, 2);
            pn_array *q = test_random_array(sh, nd, PN_FLOAT64, -2, 2);
            double *av = test_to_f64(a), *pv = test_to_f64(p), *qv = test_to_f64(q);
            int64_t m = outer * inner;
            double *cs = malloc(m * sizeof *cs), *t2 = malloc(m * sizeof *t2), *t4 = malloc(m * sizeof *t4);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t in = 0; in < inner; in++) {
                    double dot = 0, n1 = 0, n2 = 0, dp2 = 0, dn2 = 0, dp4 = 0, dn4 = 0;
                    for (int64_t k = 0; k < len; k++) {
                        int64_t e = (o * len + k) * inner + in;
                        dot += av[e] * pv[e], n1 += av[e] * av[e], n2 += pv[e] * pv[e];
                        double dp = av[e] - pv[e], dn = av[e] - qv[e];
                        dp2 += dp * dp, dn2 += dn * dn, dp4 += pow(dp, 4), dn4 += pow(dn, 4);
                    }
                    int64_t oi = o * inner + in;
                    cs[oi] = dot / fmax(sqrt(n1) * sqrt(n2), 1e-8);
                    t2[oi] = fmax(sqrt(dp2 + 1e-6) - sqrt(dn2 + 1e-6) + 1.0, 0);
                    t4[oi] = fmax(sqrt(dp4 + 1e-6) - sqrt(dn4 + 1e-6) + 0.5, 0);
                }
            for (int k = 0; k < RED_N; k++) {
                pn_loss_reduction r = REDS[k];
                check_red("cosine_similarity", pn_nn_cosine_similarity_loss(a, p, axis, 1e-8, r), r, cs, m, osh, nd - 1, PN_FLOAT64);
                check_red("triplet p=2", pn_nn_triplet_loss(a, p, q, axis, 2, 1.0, 1e-6, r), r, t2, m, osh, nd - 1, PN_FLOAT64);
                check_red("triplet p=4", pn_nn_triplet_loss(a, p, q, axis, 4, 0.5, 1e-6, r), r, t4, m, osh, nd - 1, PN_FLOAT64);
            }
            free(av), free(pv), free(qv), free(cs), free(t2), free(t4);
        }
    }
    /* cosine of zero vectors: eps keeps the denominator positive, the result is 0 */
    pn_array *z = pn_zeros((int64_t[]){2, 3}, 2, PN_FLOAT32);
    double zero[2] = {0, 0};
    test_check_values("cosine zeros", pn_nn_cosine_similarity_loss(z, z, 1, 1e-8, PN_REDUCTION_NONE),
                      (int64_t[]){2}, 1, PN_FLOAT32, zero, 0, 0);
    pn_scope_pop();
}

typedef struct {
    int kind;
} gctx;

static pn_array *loss_op(void *ctx, pn_array *const *in)
{
    pn_loss_reduction r = PN_REDUCTION_SUM;
    switch (((gctx *)ctx)->kind) {
    case 0: return pn_nn_log_cosh_loss(in[0], in[1], r);
    case 1: return pn_nn_hinge_loss(in[0], in[1], r);
    case 2: return pn_nn_cosine_similarity_loss(in[0], in[1], 1, 1e-8, PN_REDUCTION_MEAN);
    case 3: return pn_nn_margin_ranking_loss(in[0], in[1], in[2], 0.2, r);
    case 4: return pn_nn_gaussian_nll_loss(in[0], in[1], in[2], true, 1e-6, PN_REDUCTION_MEAN);
    default: return pn_nn_triplet_loss(in[0], in[1], in[2], -1, 2, 1.5, 1e-6, r);
    }
}

TEST(loss_gradients)
{
    pn_scope_push();
    static const char *names[6] = {"log_cosh", "hinge", "cosine_similarity", "margin_ranking", "gaussian_nll", "triplet"};
    static const int nin[6] = {2, 2, 2, 3, 3, 3};
    for (int k = 0; k < 6; k++) {
        pn_array *in[3];
        for (int i = 0; i < 3; i++) in[i] = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -2, 2);
        if (k == 3) in[2] = pn_sign(in[2]);
        if (k == 4) in[2] = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, 0.3, 2);
        gctx c = {k};
        test_gradcheck(names[k], loss_op, &c, nin[k], in, 1e-5);
    }
    pn_scope_pop();
}

TEST(loss_errors)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){4, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *c = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT32, -1, 1);
    pn_loss_reduction bad = (pn_loss_reduction)9;
    CHECK_ERR(pn_nn_log_cosh_loss(a, a, bad), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_hinge_loss(a, a, bad), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_hinge_loss(a, b, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_log_cosh_loss(a, c, PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_cosine_similarity_loss(a, a, 2, 1e-8, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_cosine_similarity_loss(a, a, 1, 1e-8, bad), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_margin_ranking_loss(a, a, b, 0, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_margin_ranking_loss(a, b, a, 0, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gaussian_nll_loss(a, b, a, false, 1e-6, PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gaussian_nll_loss(a, a, c, false, 1e-6, PN_REDUCTION_MEAN), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_gaussian_nll_loss(a, a, a, false, 1e-6, bad), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_triplet_loss(a, a, a, -3, 2, 1, 1e-6, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_triplet_loss(a, a, c, -1, 2, 1, 1e-6, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_triplet_loss(a, a, a, -1, 2, 1, 1e-6, bad), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_log_cosh_loss(NULL, a, PN_REDUCTION_NONE), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ── activations added with these losses: softshrink, hard_shrink, step, softmin ── */
static pn_array *act2_op(void *ctx, pn_array *const *in)
{
    switch (((gctx *)ctx)->kind) {
    case 0: return pn_nn_softshrink(in[0], 0.5);
    case 1: return pn_nn_hard_shrink(in[0], 0.7);
    default: return pn_nn_softmin(in[0], 1);
    }
}

TEST(activations2)
{
    pn_scope_push();
    for (int s = 0; s < 3; s++) {
        const int64_t *sh = SHAPES[s];
        int nd = NDIMS[s];
        for (int dtk = 0; dtk < 2; dtk++) {
            pn_dtype dt = dtk ? PN_FLOAT32 : PN_FLOAT64;
            double tol = dtk ? 2e-6 : 1e-13;
            pn_array *x = test_random_array(sh, nd, dt, -3, 3);
            double *xv = test_to_f64(x);
            int64_t n = pn_size(x);
            double *ss = malloc(n * sizeof *ss), *hs = malloc(n * sizeof *hs), *st = malloc(n * sizeof *st);
            double *sm = malloc(n * sizeof *sm);
            for (int64_t i = 0; i < n; i++) {
                ss[i] = xv[i] > 0.4 ? xv[i] - 0.4 : xv[i] < -0.4 ? xv[i] + 0.4 : 0;
                hs[i] = fabs(xv[i]) > 0.5 ? xv[i] : 0;
                st[i] = xv[i] > 0.25 ? 1 : 0;
            }
            int64_t outer, len, inner; /* softmin along the last axis */
            split(sh, nd, nd - 1, &outer, &len, &inner);
            for (int64_t o = 0; o < outer; o++) {
                double mn = INFINITY, z = 0;
                for (int64_t k = 0; k < len; k++) mn = fmin(mn, xv[o * len + k]);
                for (int64_t k = 0; k < len; k++) z += exp(mn - xv[o * len + k]);
                for (int64_t k = 0; k < len; k++) sm[o * len + k] = exp(mn - xv[o * len + k]) / z;
            }
            test_check_values("softshrink", pn_nn_softshrink(x, 0.4), sh, nd, dt, ss, tol, tol);
            test_check_values("hard_shrink", pn_nn_hard_shrink(x, 0.5), sh, nd, dt, hs, tol, tol);
            test_check_values("step", pn_nn_step(x, 0.25), sh, nd, PN_INT32, st, 0, 0);
            test_check_values("softmin", pn_nn_softmin(x, -1), sh, nd, dt, sm, tol, tol);
            free(xv), free(ss), free(hs), free(st), free(sm);
        }
    }
    static const char *names[3] = {"softshrink", "hard_shrink", "softmin"};
    for (int k = 0; k < 3; k++) {
        pn_array *x = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT64, -2, 2);
        gctx c = {k};
        test_gradcheck(names[k], act2_op, &c, 1, &x, 1e-6);
    }
    pn_array *x = test_random_array((int64_t[]){3, 5}, 2, PN_FLOAT32, -2, 2);
    CHECK_ERR(pn_nn_softmin(x, 2), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_softmin(x, -3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_softshrink(NULL, 0.5), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ── initializers added with these losses: constant, identity, sparse, orthogonal ── */
TEST(initializers2)
{
    pn_scope_push();
    pn_array *c = pn_nn_init_constant((int64_t[]){3, 4}, 2, PN_FLOAT32, 0.75);
    double cref[12];
    for (int i = 0; i < 12; i++) cref[i] = 0.75;
    test_check_values("constant", c, (int64_t[]){3, 4}, 2, PN_FLOAT32, cref, 0, 0);
    double eref[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    test_check_values("identity", pn_nn_init_identity((int64_t[]){3, 3}, 2, PN_FLOAT64), (int64_t[]){3, 3}, 2,
                      PN_FLOAT64, eref, 0, 0);
    CHECK_ERR(pn_nn_init_identity((int64_t[]){3, 4}, 2, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_init_identity((int64_t[]){3}, 1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);

    /* sparse: exactly ceil(sparsity * cols) zeros per row, the rest N(mean, std) */
    int64_t R = test_quick() ? 40 : 200, C = 10;
    pn_array *key = pn_random_key(3);
    pn_array *s = pn_nn_init_sparse((int64_t[]){R, C}, 2, PN_FLOAT32, 0.25, 2.0, 0.5, key);
    CHECK_OK(s);
    CHECK(pn_array_dtype(s) == PN_FLOAT32);
    double *sv = test_to_f64(s), sum = 0, sq = 0;
    int64_t nz = 0;
    for (int64_t i = 0; i < R; i++) {
        int zeros = 0;
        for (int64_t j = 0; j < C; j++) {
            double v = sv[i * C + j];
            if (v == 0) zeros++;
            else sum += v, sq += v * v, nz++;
        }
        CHECK_MSG(zeros == 3, "sparse row %lld has %d zeros, expected 3", (long long)i, zeros);
    }
    double m = sum / (double)nz, sd = sqrt(sq / (double)nz - m * m);
    CHECK_MSG(fabs(m - 2.0) < 0.15 && fabs(sd - 0.5) < 0.1, "sparse mean %g std %g", m, sd);
    free(sv);
    /* same key, same result */
    pn_array *s2 = pn_nn_init_sparse((int64_t[]){R, C}, 2, PN_FLOAT32, 0.25, 2.0, 0.5, key);
    CHECK_OK(s2);
    double *a1 = test_to_f64(s), *a2 = test_to_f64(s2);
    CHECK(a1 && a2 && !memcmp(a1, a2, (size_t)(R * C) * sizeof(double)));
    free(a1), free(a2);
    CHECK_ERR(pn_nn_init_sparse((int64_t[]){2, 3, 4}, 3, PN_FLOAT32, 0.5, 0, 1, NULL), PN_ERR_INVALID_ARGUMENT);

    /* orthogonal: orthonormal rows (wide) or columns (tall), scaled by gain */
    const int64_t shapes[3][2] = {{5, 5}, {7, 3}, {3, 7}};
    for (int k = 0; k < 3; k++) {
        int64_t r = shapes[k][0], cc = shapes[k][1];
        pn_array *q = pn_nn_init_orthogonal(shapes[k], 2, PN_FLOAT64, 1.5, NULL);
        CHECK_OK(q);
        double *qv = test_to_f64(q);
        if (!qv) continue;
        bool tall = r >= cc;
        int64_t d = tall ? cc : r, len = tall ? r : cc;
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double dot = 0;
                for (int64_t t = 0; t < len; t++)
                    dot += tall ? qv[t * cc + i] * qv[t * cc + j] : qv[i * cc + t] * qv[j * cc + t];
                double want = i == j ? 2.25 : 0;
                CHECK_MSG(fabs(dot - want) < 1e-10, "orthogonal %lldx%lld: <%lld,%lld> = %g", (long long)r,
                          (long long)cc, (long long)i, (long long)j, dot);
            }
        free(qv);
    }
    CHECK_ERR(pn_nn_init_orthogonal((int64_t[]){4}, 1, PN_FLOAT32, 1, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_init_orthogonal((int64_t[]){2, 2, 2}, 3, PN_FLOAT32, 1, NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
