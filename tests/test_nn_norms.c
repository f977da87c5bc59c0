/* test_nn_norms.c — batch, group and instance normalization (src/nn/norms.c) against float64
 * references computed here: values on random data in several shapes, running-stat updates,
 * eval mode, both group orderings, gradients (vjp/jvp vs finite differences), errors. */
#include "harness.h"

#include <string.h>

enum { BN, IN, GN };

/* The float64 reference: x (N, S, C) row-major; stats per id: BN -> c, IN -> (n, c),
 * GN -> (n, group(c)). Writes y (N*S*C); for BN also the batch mean and biased var (C). */
static void ref_norm(const double *x, int64_t N, int64_t S, int64_t C, int mode, int G, bool pt,
                     const double *w, const double *b, double eps, double *y, double *bmean, double *bvar)
{
    int64_t nid = mode == BN ? C : mode == IN ? N * C : N * G, gs = mode == GN ? C / G : 1;
    double *sum = calloc(nid, sizeof *sum), *sq = calloc(nid, sizeof *sq), *cnt = calloc(nid, sizeof *cnt);
    int64_t *id = malloc(sizeof *id * (N * S * C + 1));
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < C; c++) {
                int64_t i = (n * S + s) * C + c;
                id[i] = mode == BN ? c : mode == IN ? n * C + c : n * G + (pt ? c / gs : c % G);
                sum[id[i]] += x[i], cnt[id[i]] += 1;
            }
    for (int64_t k = 0; k < nid; k++) sum[k] /= cnt[k];
    for (int64_t i = 0; i < N * S * C; i++) sq[id[i]] += (x[i] - sum[id[i]]) * (x[i] - sum[id[i]]);
    for (int64_t k = 0; k < nid; k++) sq[k] /= cnt[k];
    for (int64_t i = 0; i < N * S * C; i++) {
        int64_t c = i % C;
        y[i] = (x[i] - sum[id[i]]) / sqrt(sq[id[i]] + eps) * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
    if (bmean) memcpy(bmean, sum, sizeof(double) * C);
    if (bvar) memcpy(bvar, sq, sizeof(double) * C);
    free(sum), free(sq), free(cnt), free(id);
}

static const int64_t shapes[][4] = {{8, 5}, {4, 3, 5}, {2, 3, 4, 6}, {3, 2, 2, 4}};
static const int shape_nd[] = {2, 3, 4, 4};
#define NSHAPES 4

static void dims_of(const int64_t *sh, int nd, int64_t *N, int64_t *S, int64_t *C)
{
    *N = sh[0], *C = sh[nd - 1], *S = 1;
    for (int i = 1; i < nd - 1; i++) *S *= sh[i];
}

TEST(batch_norm_training_values_and_running_stats)
{
    pn_scope_push();
    const pn_dtype dts[] = {PN_FLOAT64, PN_FLOAT32};
    for (int si = 0; si < NSHAPES; si++)
        for (int di = 0; di < 2; di++)
            for (int aff = 0; aff < 2; aff++) {
                pn_scope_push();
                const int64_t *sh = shapes[si];
                int nd = shape_nd[si];
                int64_t N, S, C;
                dims_of(sh, nd, &N, &S, &C);
                pn_dtype dt = dts[di];
                pn_array *x = test_random_array(sh, nd, dt, -2, 3);
                pn_array *w = aff ? test_random_array(&C, 1, dt, 0.5, 1.5) : NULL;
                pn_array *b = aff ? test_random_array(&C, 1, dt, -1, 1) : NULL;
                pn_array *rm = test_random_array(&C, 1, dt, -1, 1);
                pn_array *rv = test_random_array(&C, 1, dt, 0.5, 2);
                double *xv = test_to_f64(x), *wv = w ? test_to_f64(w) : NULL, *bv = b ? test_to_f64(b) : NULL;
                double *rmv = test_to_f64(rm), *rvv = test_to_f64(rv);
                double *y = malloc(sizeof(double) * N * S * C), bm[8], bvr[8], em[8], ev[8];
                double eps = 1e-5, mom = aff ? 0.1 : 0.3;
                ref_norm(xv, N, S, C, BN, 0, false, wv, bv, eps, y, bm, bvr);
                for (int c = 0; c < C; c++) {
                    em[c] = (1 - mom) * rmv[c] + mom * bm[c];
                    /* the running variance takes the unbiased batch variance (as MLX) */
                    ev[c] = (1 - mom) * rvv[c] + mom * bvr[c] * (double)(N * S) / (double)(N * S - 1);
                }
                double tol = dt == PN_FLOAT64 ? 1e-10 : 1e-4;
                pn_array *nm = NULL, *nv = NULL;
                pn_array *out = pn_nn_batch_norm(x, w, b, rm, rv, true, mom, eps, &nm, &nv);
                CHECK_OK(out);
                test_check_values("batch_norm train", out, sh, nd, dt, y, tol, tol);
                CHECK_OK(nm);
                CHECK_OK(nv);
                test_check_values("batch_norm running_mean", nm, &C, 1, dt, em, tol, tol);
                test_check_values("batch_norm running_var", nv, &C, 1, dt, ev, tol, tol);
                /* no running stats: same output, no update */
                pn_array *nm2 = (pn_array *)1, *nv2 = (pn_array *)1;
                out = pn_nn_batch_norm(x, w, b, NULL, NULL, true, mom, eps, &nm2, &nv2);
                test_check_values("batch_norm train (no stats)", out, sh, nd, dt, y, tol, tol);
                CHECK(nm2 == NULL && nv2 == NULL);
                /* one of the update pointers NULL */
                nv2 = NULL;
                out = pn_nn_batch_norm(x, w, b, rm, rv, true, mom, eps, NULL, &nv2);
                test_check_values("batch_norm train (var only)", out, sh, nd, dt, y, tol, tol);
                CHECK_OK(nv2);
                test_check_values("batch_norm running_var (var only)", nv2, &C, 1, dt, ev, tol, tol);
                free(xv), free(wv), free(bv), free(rmv), free(rvv), free(y);
                pn_scope_pop();
            }
    pn_scope_pop();
}

TEST(batch_norm_eval_uses_running_stats)
{
    pn_scope_push();
    for (int si = 0; si < NSHAPES; si++)
        for (int aff = 0; aff < 2; aff++) {
            pn_scope_push();
            const int64_t *sh = shapes[si];
            int nd = shape_nd[si];
            int64_t N, S, C;
            dims_of(sh, nd, &N, &S, &C);
            pn_array *x = test_random_array(sh, nd, PN_FLOAT64, -2, 3);
            pn_array *w = aff ? test_random_array(&C, 1, PN_FLOAT64, 0.5, 1.5) : NULL;
            pn_array *b = aff ? test_random_array(&C, 1, PN_FLOAT64, -1, 1) : NULL;
            pn_array *rm = test_random_array(&C, 1, PN_FLOAT64, -1, 1);
            pn_array *rv = test_random_array(&C, 1, PN_FLOAT64, 0.5, 2);
            double *xv = test_to_f64(x), *wv = w ? test_to_f64(w) : NULL, *bv = b ? test_to_f64(b) : NULL;
            double *rmv = test_to_f64(rm), *rvv = test_to_f64(rv);
            int64_t n = N * S * C;
            double *y = malloc(sizeof(double) * n), eps = 1e-3;
            for (int64_t i = 0; i < n; i++) {
                int64_t c = i % C;
                y[i] = (xv[i] - rmv[c]) / sqrt(rvv[c] + eps) * (wv ? wv[c] : 1) + (bv ? bv[c] : 0);
            }
            pn_array *nm = (pn_array *)1, *nv = (pn_array *)1;
            pn_array *out = pn_nn_batch_norm(x, w, b, rm, rv, false, 0.1, eps, &nm, &nv);
            test_check_values("batch_norm eval", out, sh, nd, PN_FLOAT64, y, 1e-10, 1e-12);
            CHECK(nm == NULL && nv == NULL);
            /* eval without running stats: batch statistics (MLX with track_running_stats off) */
            ref_norm(xv, N, S, C, BN, 0, false, wv, bv, eps, y, NULL, NULL);
            out = pn_nn_batch_norm(x, w, b, NULL, NULL, false, 0.1, eps, NULL, NULL);
            test_check_values("batch_norm eval (no stats)", out, sh, nd, PN_FLOAT64, y, 1e-10, 1e-12);
            free(xv), free(wv), free(bv), free(rmv), free(rvv), free(y);
            pn_scope_pop();
        }
    pn_scope_pop();
}

TEST(group_norm_values_both_orderings)
{
    pn_scope_push();
    static const int64_t gsh[][4] = {{4, 6}, {2, 3, 6}, {2, 3, 4, 8}, {3, 2, 2, 4}};
    static const int gnd[] = {2, 3, 4, 4};
    static const int groups[][3] = {{1, 2, 3}, {1, 3, 2}, {2, 4, 8}, {1, 2, 4}};
    for (int si = 0; si < 4; si++)
        for (int gi = 0; gi < 3; gi++)
            for (int pt = 0; pt < 2; pt++)
                for (int aff = 0; aff < 2; aff++) {
                    pn_scope_push();
                    const int64_t *sh = gsh[si];
                    int nd = gnd[si], G = groups[si][gi];
                    int64_t N, S, C;
                    dims_of(sh, nd, &N, &S, &C);
                    pn_array *x = test_random_array(sh, nd, PN_FLOAT64, -2, 3);
                    pn_array *w = aff ? test_random_array(&C, 1, PN_FLOAT64, 0.5, 1.5) : NULL;
                    pn_array *b = aff ? test_random_array(&C, 1, PN_FLOAT64, -1, 1) : NULL;
                    double *xv = test_to_f64(x), *wv = w ? test_to_f64(w) : NULL, *bv = b ? test_to_f64(b) : NULL;
                    double *y = malloc(sizeof(double) * N * S * C), *y2 = malloc(sizeof(double) * N * S * C);
                    ref_norm(xv, N, S, C, GN, G, pt, wv, bv, 1e-5, y, NULL, NULL);
                    pn_array *out = pn_nn_group_norm(x, G, w, b, 1e-5, pt);
                    CHECK_OK(out);
                    if (!test_check_values(pt ? "group_norm (pytorch)" : "group_norm (mlx)", out, sh, nd,
                                           PN_FLOAT64, y, 1e-10, 1e-12))
                        fprintf(stderr, "  shape #%d groups %d pytorch %d affine %d\n", si, G, pt, aff);
                    /* the orderings differ when groups hold several channels and there are several groups */
                    if (G > 1 && C / G > 1) {
                        ref_norm(xv, N, S, C, GN, G, !pt, wv, bv, 1e-5, y2, NULL, NULL);
                        double diff = 0;
                        for (int64_t i = 0; i < N * S * C; i++) diff = fmax(diff, fabs(y[i] - y2[i]));
                        CHECK(diff > 1e-3);
                    }
                    free(xv), free(wv), free(bv), free(y), free(y2);
                    pn_scope_pop();
                }
    /* float32 and a non-contiguous (transposed) input */
    pn_array *xt = test_random_array((int64_t[]){6, 4, 3}, 3, PN_FLOAT32, -2, 3);
    pn_array *x = pn_transpose(xt, NULL, 0); /* (3, 4, 6) */
    double *xv = test_to_f64(x), y[72];
    ref_norm(xv, 3, 4, 6, GN, 3, false, NULL, NULL, 1e-5, y, NULL, NULL);
    test_check_values("group_norm (transposed f32)", pn_nn_group_norm(x, 3, NULL, NULL, 1e-5, false),
                      (int64_t[]){3, 4, 6}, 3, PN_FLOAT32, y, 1e-4, 1e-4);
    ref_norm(xv, 3, 4, 6, GN, 2, true, NULL, NULL, 1e-5, y, NULL, NULL);
    test_check_values("group_norm (transposed f32, pytorch)", pn_nn_group_norm(x, 2, NULL, NULL, 1e-5, true),
                      (int64_t[]){3, 4, 6}, 3, PN_FLOAT32, y, 1e-4, 1e-4);
    free(xv);
    pn_scope_pop();
}

TEST(instance_norm_values)
{
    pn_scope_push();
    static const int64_t ish[][4] = {{2, 5, 3}, {2, 3, 4, 5}, {1, 7, 2}, {3, 4}};
    static const int ind[] = {3, 4, 3, 2};
    for (int si = 0; si < 4; si++)
        for (int aff = 0; aff < 2; aff++) {
            pn_scope_push();
            const int64_t *sh = ish[si];
            int nd = ind[si];
            int64_t N, S, C;
            dims_of(sh, nd, &N, &S, &C);
            pn_array *x = test_random_array(sh, nd, PN_FLOAT64, -2, 3);
            pn_array *w = aff ? test_random_array(&C, 1, PN_FLOAT64, 0.5, 1.5) : NULL;
            pn_array *b = aff ? test_random_array(&C, 1, PN_FLOAT64, -1, 1) : NULL;
            double *xv = test_to_f64(x), *wv = w ? test_to_f64(w) : NULL, *bv = b ? test_to_f64(b) : NULL;
            double *y = malloc(sizeof(double) * N * S * C);
            ref_norm(xv, N, S, C, IN, 0, false, wv, bv, 1e-5, y, NULL, NULL); /* 2-d: S == 1 -> x̂ = 0 */
            test_check_values("instance_norm", pn_nn_instance_norm(x, w, b, 1e-5), sh, nd, PN_FLOAT64, y, 1e-10,
                              1e-12);
            free(xv), free(wv), free(bv), free(y);
            pn_scope_pop();
        }
    /* half inputs keep their dtype; values in float32 precision */
    pn_array *x = test_random_array((int64_t[]){2, 4, 3}, 3, PN_FLOAT32, -2, 3);
    pn_array *h = pn_astype(x, PN_BFLOAT16);
    double *hv = test_to_f64(h), y[24];
    ref_norm(hv, 2, 4, 3, IN, 0, false, NULL, NULL, 1e-5, y, NULL, NULL);
    test_check_values("instance_norm bf16", pn_nn_instance_norm(h, NULL, NULL, 1e-5), (int64_t[]){2, 4, 3}, 3,
                      PN_BFLOAT16, y, test_tol(PN_BFLOAT16), 2e-2);
    free(hv);
    CHECK(pn_array_dtype(pn_nn_group_norm(h, 3, NULL, NULL, 1e-5, false)) == PN_BFLOAT16);
    CHECK(pn_array_dtype(pn_nn_batch_norm(h, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL)) == PN_BFLOAT16);
    pn_scope_pop();
}

typedef struct {
    int mode, groups;
    bool pt, training;
} norm_ctx;

static pn_array *norm_op(void *ctx, pn_array *const *in)
{
    const norm_ctx *k = ctx;
    switch (k->mode) {
    case BN:
        return pn_nn_batch_norm(in[0], in[1], in[2], k->training ? NULL : in[3], k->training ? NULL : in[4],
                                k->training, 0.1, 1e-5, NULL, NULL);
    case IN: return pn_nn_instance_norm(in[0], in[1], in[2], 1e-5);
    default: return pn_nn_group_norm(in[0], k->groups, in[1], in[2], 1e-5, k->pt);
    }
}

/* The running-statistic updates as functions of (running_mean, x, running_var); ctx picks
 * the mean (0) or the variance (1). */
static pn_array *running_op(void *ctx, pn_array *const *in)
{
    pn_array *nm = NULL, *nv = NULL;
    pn_array *y = pn_nn_batch_norm(in[1], NULL, NULL, in[0], in[2], true, 0.25, 1e-5, &nm, &nv);
    return y ? (*(const int *)ctx ? nv : nm) : NULL;
}

TEST(norm_gradients)
{
    pn_scope_push();
    int64_t sh[4] = {2, 3, 2, 4}, C = 4;
    pn_array *x = test_random_array(sh, 4, PN_FLOAT64, -2, 3);
    pn_array *w = test_random_array(&C, 1, PN_FLOAT64, 0.5, 1.5);
    pn_array *b = test_random_array(&C, 1, PN_FLOAT64, -1, 1);
    pn_array *rm = test_random_array(&C, 1, PN_FLOAT64, -1, 1);
    pn_array *rv = test_random_array(&C, 1, PN_FLOAT64, 0.5, 2);
    pn_array *in[5] = {x, w, b, rm, rv};
    norm_ctx cases[] = {{BN, 0, false, true}, {BN, 0, false, false}, {IN, 0, false, false},
                        {GN, 2, false, false}, {GN, 2, true, false}, {GN, 4, false, false}};
    const char *names[] = {"batch_norm train", "batch_norm eval", "instance_norm", "group_norm (mlx)",
                           "group_norm (pytorch)", "group_norm (4 groups)"};
    for (int i = 0; i < 6; i++)
        test_gradcheck(names[i], norm_op, &cases[i], cases[i].mode == BN && !cases[i].training ? 5 : 3, in, 1e-5);
    pn_array *x2 = test_random_array((int64_t[]){5, 3}, 2, PN_FLOAT64, -2, 3);
    pn_array *in2[3] = {x2, w, b};
    pn_array *w3 = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, 0.5, 1.5);
    pn_array *b3 = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1, 1);
    in2[1] = w3, in2[2] = b3;
    test_gradcheck("batch_norm train 2-d", norm_op, &cases[0], 3, in2, 1e-5);
    pn_array *rm3 = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1, 1);
    pn_array *rv3 = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, 0.5, 2);
    pn_array *in3[3] = {rm3, x2, rv3};
    int which[2] = {0, 1};
    test_gradcheck("batch_norm running mean update", running_op, &which[0], 3, in3, 1e-5);
    test_gradcheck("batch_norm running var update", running_op, &which[1], 3, in3, 1e-5);
    pn_scope_pop();
}

TEST(norm_errors)
{
    pn_scope_push();
    pn_array *x1 = test_random_array((int64_t[]){5}, 1, PN_FLOAT32, -1, 1);
    pn_array *x = test_random_array((int64_t[]){2, 3, 6}, 3, PN_FLOAT32, -1, 1);
    pn_array *x5 = test_random_array((int64_t[]){2, 1, 1, 1, 6}, 5, PN_FLOAT32, -1, 1);
    pn_array *c6 = test_random_array((int64_t[]){6}, 1, PN_FLOAT32, 0.5, 1);
    pn_array *c5 = test_random_array((int64_t[]){5}, 1, PN_FLOAT32, 0.5, 1);
    pn_array *m6 = test_random_array((int64_t[]){1, 6}, 2, PN_FLOAT32, 0.5, 1);
    pn_array *cx = pn_astype(x, PN_COMPLEX64);
    pn_array *nm = (pn_array *)1;
    /* batch norm */
    CHECK_ERR(pn_nn_batch_norm(x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(x5, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(x, c5, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(x, NULL, m6, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(x, NULL, NULL, c6, NULL, true, 0.1, 1e-5, &nm, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK(nm == NULL);
    CHECK_ERR(pn_nn_batch_norm(x, NULL, NULL, c6, c5, false, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(x, NULL, NULL, m6, c6, false, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_batch_norm(cx, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* training needs more than one value per channel (eval does not) */
    pn_array *one = test_random_array((int64_t[]){1, 1, 6}, 3, PN_FLOAT32, -1, 1);
    CHECK_ERR(pn_nn_batch_norm(one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK(pn_nn_batch_norm(one, NULL, NULL, c6, c6, false, 0.1, 1e-5, NULL, NULL) != NULL);
    CHECK_ERR(pn_nn_batch_norm(NULL, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, NULL, NULL), PN_ERR_INVALID_ARGUMENT);
    /* group norm */
    CHECK_ERR(pn_nn_group_norm(x, 4, NULL, NULL, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(x, 0, NULL, NULL, 1e-5, true), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(x, -2, NULL, NULL, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(x1, 1, NULL, NULL, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(x, 2, c5, NULL, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(x, 2, NULL, m6, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_group_norm(cx, 2, NULL, NULL, 1e-5, false), PN_ERR_INVALID_ARGUMENT);
    /* instance norm */
    CHECK_ERR(pn_nn_instance_norm(x1, NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_instance_norm(x, c5, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_instance_norm(x, c6, m6, 1e-5), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_nn_instance_norm(cx, NULL, NULL, 1e-5), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}
